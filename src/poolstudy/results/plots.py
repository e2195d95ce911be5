"""Figures of a summary, each as PNG and as vector SVG (and PDF on request; ``FORMATS``). Figures are built with
matplotlib's object API (no pyplot state, no GUI backend) and saved without a timestamp or version
stamp (SVG ids from a fixed salt), so the same inputs give the same bytes."""

from __future__ import annotations

import io
import math
from pathlib import PurePath
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import matplotlib
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


FORMATS = ("png", "svg", "pdf")  # the formats a figure can be written in
# PNG for Markdown (index.md shows it, so it is always written), SVG for report.html (inlined) and papers;
# PDF on request (python -m poolstudy.collect --formats png,svg,pdf): it repeats the SVG's content.
DEFAULT_FORMATS = ("png", "svg")
# No stamps: the same figure gives the same bytes (PDF: no dates or producer; SVG: no date, fixed id salt).
_METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
             "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}}


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "poolstudy", "svg.fonttype": "path", "pdf.fonttype": 42}):
        fig.savefig(buffer, format=fmt, dpi=DPI, bbox_inches="tight", metadata=_METADATA[fmt])
    return buffer.getvalue()


def save_png(fig: Figure, path: Path) -> None:
    atomic_write_bytes(path, figure_bytes(fig, "png"))


def save_figure(fig: Figure, png_path: Path, formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[str]:
    """``png_path`` and its siblings in the other ``formats`` (same stem); returns the file names written."""
    written = []
    for fmt in formats:
        path = png_path.with_suffix(f".{fmt}")
        atomic_write_bytes(path, figure_bytes(fig, fmt))
        written.append(path.name)
    return written


def format_names(name: str, formats: tuple[str, ...] = FORMATS) -> list[str]:
    """The files of the figure ``name`` (a .png name) in ``formats``, PNG included when listed."""
    stem = PurePath(name).stem
    return [f"{stem}.{fmt}" for fmt in formats]


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
    """Per dataset, one row per variant, sorted by mean (best on top): seeds as dots, the mean with its
    95 % Student-t interval as a bar. Tuned variants (HPO final runs) have filled dots and a black bar,
    untuned ones hollow dots and a grey bar; the baseline's label is bold. Horizontal rows keep the labels
    readable at any number of variants."""
    xlabel = f"{metric_title(summary.metric)} (%)"
    panels = summary.panels
    n_rows = max((len([r for r in summary.in_panel(p) if r.metric.n]) for p in panels), default=1)
    cols = min(max(len(panels), 1), 3)
    grid_rows = math.ceil(max(len(panels), 1) / cols)
    # 0.3 inch per variant row, a panel's title and axis around them, the figure's title and legend once
    fig = Figure(figsize=(PANEL_SIZE[0] * cols + 1.2, grid_rows * (1.0 + 0.3 * max(n_rows, 3)) + 0.6),
                 layout="constrained")
    axes = list(fig.subplots(grid_rows, cols, squeeze=False).flat)
    for extra in axes[len(panels):]:
        extra.set_visible(False)
    any_tuned = any(row.cell.tuned for row in summary.rows)
    for ax, panel in zip(axes, panels):
        rows = sorted((r for r in summary.in_panel(panel) if r.metric.n), key=lambda r: (-r.metric.mean, r.label))
        ax.set_title(panel_name(panel))
        ax.grid(axis="x", alpha=0.3)
        for y, row in enumerate(rows):
            values = 100 * np.asarray(row.values)
            # seeds spread evenly in the row (not randomly: the figure must be reproducible)
            offsets = np.linspace(-0.22, 0.22, len(values)) if len(values) > 1 else np.zeros(len(values))
            color = palette[row.label]
            ax.scatter(values, y + offsets, s=18, zorder=2, linewidths=1.1,
                       facecolors=color if row.cell.tuned else "none", edgecolors=color, alpha=0.75)
            bar_color = "black" if row.cell.tuned or not any_tuned else "0.45"
            if row.metric.n >= 2:
                err = [[100 * (row.metric.mean - row.metric.ci_low)], [100 * (row.metric.ci_high - row.metric.mean)]]
                ax.errorbar([100 * row.metric.mean], [y], xerr=err, fmt="|", color=bar_color, markersize=14,
                            capsize=4, zorder=3)
            else:
                ax.plot([100 * row.metric.mean], [y], "|", color=bar_color, markersize=14, zorder=3)
        ax.set_yticks(range(len(rows)), [r.label for r in rows])
        for tick, row in zip(ax.get_yticklabels(), rows):
            if row.is_baseline:
                tick.set_fontweight("bold")
        ax.set_ylim(len(rows) - 0.5, -0.5)  # best on top
        ax.set_xlabel(xlabel)
    handles = [Line2D([], [], marker="|", ls="", color="black", markersize=12, label="mean ± 95% CI (Student t)")]
    if any_tuned:
        handles = [Line2D([], [], marker="o", ls="", color="gray", label="tuned (HPO): one seed"),
                   Line2D([], [], marker="o", ls="", color="gray", markerfacecolor="none",
                          label="untuned (defaults): one seed"), *handles]
    else:
        handles.insert(0, Line2D([], [], marker="o", ls="", color="gray", markerfacecolor="none", label="one seed"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
    fig.suptitle(f"{metric_title(summary.metric).capitalize()} per variant, best first (baseline in bold)")
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
    ("accuracy.png", "Accuracy per variant and dataset, best first; dots are seeds (filled: tuned by HPO, hollow: "
                     "untuned), bars the 95% CI of the mean; the baseline's label is bold.",
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
    # poolstudy.results.rank: its caption says how the ranks and verdicts are computed
    ("ranks.png", "", lambda summary, studies, palette: _rank_figure(summary)),
]
FIGURE_NAMES = tuple(name for name, _, _ in FIGURES)


def _rank_figure(summary: Summary) -> tuple[Figure, str] | None:
    from poolstudy.results.rank import caption, rank_variants
    from poolstudy.results.rank_plot import rank_figure

    ranking = rank_variants(summary)
    return None if ranking is None else (rank_figure(ranking), caption(ranking))


def write_figures(summary: Summary, studies: list[Study], out: Path,
                  formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[tuple[str, str]]:
    """Writes every figure that has data, as ``<name>.png`` and its vector siblings (``formats``); returns
    (PNG file name, caption) of those written. A builder may return (figure, caption) to set the caption."""
    palette = Palette([row.label for row in summary.rows] + [s.label for s in studies])
    written = []
    for name, caption, build in FIGURES:
        fig = build(summary, studies, palette)
        if isinstance(fig, tuple):
            fig, caption = fig
        if fig is not None:
            save_figure(fig, out / name, formats)
            written.append((name, caption))
    return written
