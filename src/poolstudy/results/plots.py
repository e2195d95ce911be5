"""PNG figures of a summary. Figures are built with matplotlib's object API (no pyplot state, no GUI
backend) and saved without a timestamp or version stamp, so the same inputs give the same bytes."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from poolstudy.results.hpo_studies import Study
from poolstudy.results.aggregate import CellSummary, Summary
from poolstudy.results.tables import metric_title, panel_name
from poolstudy.utils.io import atomic_write_bytes

MARKERS = "osD^vPX*"
PANEL_SIZE = (4.6, 3.6)  # inches per panel
DPI = 90


class Palette:
    """One colour per variant label, the same in every figure."""

    def __init__(self, labels: list[str]):
        self.colors = {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(labels))}

    def __getitem__(self, label: str) -> str:
        if label not in self.colors:
            self.colors[label] = f"C{len(self.colors) % 10}"
        return self.colors[label]


def save_png(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())


def _panel_axes(n: int, suptitle: str) -> tuple[Figure, list[Axes]]:
    cols = min(max(n, 1), 3)
    rows = math.ceil(max(n, 1) / cols)
    fig = Figure(figsize=(PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for extra in axes[n:]:
        extra.set_visible(False)
    fig.suptitle(suptitle)
    return fig, axes[:n]


def _per_panel(panels: list[Any], suptitle: str, draw: Callable[[Axes, Any], None]) -> Figure:
    fig, axes = _panel_axes(len(panels), suptitle)
    for ax, panel in zip(axes, panels):
        ax.set_title(panel_name(panel))
        ax.grid(alpha=0.3)
        draw(ax, panel)
    return fig


def accuracy_figure(summary: Summary, palette: Palette) -> Figure:
    ylabel = f"{metric_title(summary.metric)} (%)"

    def draw(ax: Axes, panel: Any) -> None:
        rows = summary.in_panel(panel)
        for x, row in enumerate(rows):
            values = 100 * np.asarray(row.values)
            # Seeds spread evenly sideways (not randomly: the figure must be reproducible).
            offsets = np.linspace(-0.18, 0.18, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.scatter(x + offsets, values, s=16, color=palette[row.label], alpha=0.6, zorder=2)
            if row.metric.n >= 2:
                err = [[100 * (row.metric.mean - row.metric.ci_low)], [100 * (row.metric.ci_high - row.metric.mean)]]
                ax.errorbar([x], [100 * row.metric.mean], yerr=err, fmt="_", color="black", markersize=18,
                            capsize=5, zorder=3)
            elif row.metric.n == 1:
                ax.plot([x], [100 * row.metric.mean], "_", color="black", markersize=18, zorder=3)
        ax.set_xticks(range(len(rows)), [r.label for r in rows], rotation=20, ha="right")
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_xlabel("variant")
        ax.set_ylabel(ylabel)

    fig = _per_panel(summary.panels, f"{metric_title(summary.metric).capitalize()} per variant", draw)
    fig.legend(handles=[Line2D([], [], marker="o", ls="", color="gray", alpha=0.6, label="one seed"),
                        Line2D([], [], marker="_", ls="", color="black", markersize=14,
                               label="mean ± 95% CI (Student t)")],
               loc="outside lower center", ncols=2)
    return fig


def _history(row: CellSummary) -> dict[int, list[float]]:
    by_epoch: dict[int, list[float]] = {}
    for job in row.cell.complete:
        for record in (job.metrics or {}).get("history") or []:
            if isinstance(record, dict) and isinstance(record.get("epoch"), int) and \
                    isinstance(record.get("val_acc"), (int, float)):
                by_epoch.setdefault(record["epoch"], []).append(float(record["val_acc"]))
    return by_epoch


def learning_curves_figure(summary: Summary, palette: Palette) -> Figure | None:
    curves = {id(row): _history(row) for row in summary.rows}
    if not any(curves.values()):
        return None

    def draw(ax: Axes, panel: Any) -> None:
        for row in summary.in_panel(panel):
            by_epoch = curves[id(row)]
            if not by_epoch:
                continue
            epochs = sorted(by_epoch)
            mean = np.array([100 * np.mean(by_epoch[e]) for e in epochs])
            std = np.array([100 * np.std(by_epoch[e], ddof=1) if len(by_epoch[e]) > 1 else 0.0 for e in epochs])
            ax.plot(epochs, mean, marker="o", markersize=3, color=palette[row.label], label=row.label)
            ax.fill_between(epochs, mean - std, mean + std, color=palette[row.label], alpha=0.2, linewidth=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (%)")
        ax.legend(fontsize="small")

    return _per_panel(summary.panels, "Learning curves: mean ± 1 std over seeds", draw)


def compute_figure(summary: Summary, palette: Palette) -> Figure | None:
    rows = [row for row in summary.rows if row.metric.n]
    if not rows:
        return None
    fig = Figure(figsize=(2 * PANEL_SIZE[0], PANEL_SIZE[1] + 0.6), layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False).flat
    markers = {panel: MARKERS[i % len(MARKERS)] for i, panel in enumerate(summary.panels)}
    for ax, (key, scale, xlabel) in zip(axes, (("macs", 1e-6, "MACs per image (millions)"),
                                                ("train_time_s", 1.0, "training time per run (s)"))):
        for row in rows:
            x = row.costs[key]
            if x is None:
                continue
            err = 100 * (row.metric.ci_high - row.metric.mean) if row.metric.n >= 2 else None
            ax.errorbar([x * scale], [100 * row.metric.mean], yerr=err, fmt=markers[row.cell.panel],
                        color=palette[row.label], capsize=3, markersize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{metric_title(summary.metric)} (%)")
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="", color=palette[label], label=label)
               for label in dict.fromkeys(row.label for row in rows)]
    handles += [Line2D([], [], marker=markers[p], ls="", color="gray", label=panel_name(p)) for p in summary.panels]
    fig.legend(handles=handles, loc="outside right center", fontsize="small")
    fig.suptitle("Accuracy against compute (mean ± 95% CI over seeds)")
    return fig


def shift_figure(summary: Summary, palette: Palette) -> Figure | None:
    panels = [p for p in summary.panels if any(row.acc_vs_shift for row in summary.in_panel(p))]
    if not panels:
        return None

    def draw(ax: Axes, panel: Any) -> None:
        for row in summary.in_panel(panel):
            if not row.acc_vs_shift:
                continue
            shifts = list(row.acc_vs_shift)
            mean = np.array([100 * s.mean for s in row.acc_vs_shift.values()])
            std = np.array([100 * s.std if s.n > 1 else 0.0 for s in row.acc_vs_shift.values()])
            ax.plot(shifts, mean, marker="o", markersize=3, color=palette[row.label], label=row.label)
            ax.fill_between(shifts, mean - std, mean + std, color=palette[row.label], alpha=0.2, linewidth=0)
        ax.set_xlabel("input shift (pixels)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize="small")

    return _per_panel(panels, "Accuracy against input shift: mean ± 1 std over seeds", draw)


def _study_panels(studies: list[Study]) -> list[Any]:
    return list(dict.fromkeys(s.panel for s in studies))


def hpo_best_so_far_figure(studies: list[Study], palette: Palette) -> Figure | None:
    studies = [s for s in studies if s.values]
    if not studies:
        return None

    def draw(ax: Axes, panel: Any) -> None:
        for study in (s for s in studies if s.panel == panel):
            numbers, best = study.best_so_far()
            points = [(n, 100 * b) for n, b in zip(numbers, best) if b is not None]
            ax.step([p[0] for p in points], [p[1] for p in points], where="post", color=palette[study.label],
                    label=study.label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial number")
        ax.set_ylabel("best validation accuracy so far (%)")
        ax.legend(fontsize="small")

    return _per_panel(_study_panels(studies), "HPO: best validation accuracy so far", draw)


def hpo_expected_max_figure(studies: list[Study], palette: Palette) -> Figure | None:
    studies = [s for s in studies if s.values]
    if not studies:
        return None

    def draw(ax: Axes, panel: Any) -> None:
        for study in (s for s in studies if s.panel == panel):
            budgets, means, stds = study.expected_max()
            mean, std = 100 * np.asarray(means), 100 * np.asarray(stds)
            ax.plot(budgets, mean, marker="o", markersize=3, color=palette[study.label], label=study.label)
            ax.fill_between(budgets, mean - std, mean + std, color=palette[study.label], alpha=0.2, linewidth=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("budget (number of trials)")
        ax.set_ylabel("expected best validation accuracy (%)")
        ax.legend(fontsize="small")

    return _per_panel(_study_panels(studies), "HPO: expected best validation accuracy for a budget "
                                              "(Dodge et al. 2019), ± 1 std", draw)


# (file name, caption, builder) in report order.
FIGURES: list[tuple[str, str, Callable[..., Figure | None]]] = [
    ("accuracy.png", "Accuracy per variant and dataset; dots are seeds, bars the 95% CI of the mean.",
     lambda summary, studies, palette: accuracy_figure(summary, palette)),
    ("learning_curves.png", "Validation accuracy per epoch, mean ± 1 std over seeds.",
     lambda summary, studies, palette: learning_curves_figure(summary, palette)),
    ("accuracy_vs_compute.png", "Accuracy against multiply-accumulates per image and training time.",
     lambda summary, studies, palette: compute_figure(summary, palette)),
    ("accuracy_vs_shift.png", "Test accuracy when the test images are shifted by a number of pixels.",
     lambda summary, studies, palette: shift_figure(summary, palette)),
    ("hpo_best_so_far.png", "Best validation accuracy found so far, per trial of each HPO study.",
     lambda summary, studies, palette: hpo_best_so_far_figure(studies, palette)),
    ("hpo_expected_max.png", "Expected best validation accuracy for a budget of n trials (Dodge et al. 2019): "
                             "a budget-fair comparison of tuned variants.",
     lambda summary, studies, palette: hpo_expected_max_figure(studies, palette)),
]
FIGURE_NAMES = tuple(name for name, _, _ in FIGURES)


def write_figures(summary: Summary, studies: list[Study], out: Path) -> list[tuple[str, str]]:
    """Writes every figure that has data; returns (file name, caption) of those written."""
    palette = Palette([row.label for row in summary.rows] + [s.label for s in studies])
    written = []
    for name, caption, build in FIGURES:
        fig = build(summary, studies, palette)
        if fig is not None:
            save_png(fig, out / name)
            written.append((name, caption))
    return written
