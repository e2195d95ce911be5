"""The collector's figures (vector copies, the per-variant accuracy figure at many variants) and report.html
as one self-contained file (tests/e2e/test_report_browser.py opens it in a real browser)."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from helpers import ROOT
from poolstudy.results import plots
from poolstudy.results.cells import Cell
from poolstudy.results.stats import spread
from poolstudy.results.aggregate import COST_KEYS, CellSummary, Summary

STUDY = ROOT / "docs" / "studies" / "seed_replication"


def _row(label: str, panel: str, values: list[float], tuned: bool = False, baseline: bool = False) -> CellSummary:
    cell = Cell(panel, {"model.downsample.type": label, "tuning": "tuned" if tuned else "untuned"}, label)
    return CellSummary(cell=cell, values=values, seeds=list(range(len(values))), jobs=[], metric=spread(values),
                       val_acc=spread(values), costs=dict.fromkeys(COST_KEYS), invariance={}, acc_vs_shift={}, is_baseline=baseline)


def _twelve_variants() -> Summary:
    rows = []
    rng = np.random.default_rng(0)
    for i in range(12):
        label = f"a rather long variant label {i} k{i % 3 + 2} s2" + (" (tuned)" if i % 4 == 0 else "")
        mean = 0.9 + 0.007 * ((i * 5) % 12)  # not in label order
        rows.append(_row(label, "mnist", list(mean + 0.003 * rng.standard_normal(5)), tuned=i % 4 == 0,
                         baseline=i == 3))
    return Summary("test_acc", grouping=None, baseline="x", alpha=0.05, rows=rows)


def test_accuracy_figure_is_horizontal_sorted_and_readable_at_twelve_variants():
    summary = _twelve_variants()
    fig = plots.accuracy_figure(summary, plots.Palette([r.label for r in summary.rows]))
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    (ax,) = [a for a in fig.axes if a.get_visible()]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    by_mean = sorted(summary.rows, key=lambda r: -r.metric.mean)
    assert labels == [r.label for r in by_mean]  # best first
    boxes = [t.get_window_extent(renderer) for t in ax.get_yticklabels()]
    for i, a in enumerate(boxes):  # no two labels overlap, all inside the figure
        assert a.x0 >= 0 and a.y0 >= 0 and a.x1 <= fig.bbox.width + 1 and a.y1 <= fig.bbox.height + 1
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    top = ax.transData.transform((0, 0))[1]  # row 0 (the best) is drawn at the top
    assert top > ax.transData.transform((0, 11))[1]
    # tuned rows: filled dots; untuned: hollow; the baseline's label bold
    from matplotlib.collections import PathCollection

    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(dots) == 12
    for collection, row in zip(dots, by_mean):
        faces = collection.get_facecolors()
        assert (len(faces) and faces[0][3] > 0) == row.cell.tuned, row.label
    bold = [t.get_text() for t in ax.get_yticklabels() if t.get_fontweight() == "bold"]
    assert bold == [r.label for r in summary.rows if r.is_baseline]


def test_figures_in_three_formats_byte_identical_when_made_twice(tmp_path):
    summary = _twelve_variants()
    written = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        fig = plots.accuracy_figure(summary, plots.Palette([r.label for r in summary.rows]))
        written.append(plots.save_figure(fig, tmp_path / folder / "accuracy.png", plots.FORMATS))
    assert written[0] == written[1] == ["accuracy.png", "accuracy.svg", "accuracy.pdf"]
    for name in ("accuracy.png", "accuracy.svg", "accuracy.pdf"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "accuracy.svg").read_bytes().startswith(b"<?xml")
    assert (tmp_path / "a" / "accuracy.pdf").read_bytes().startswith(b"%PDF")
    assert b"<text" not in (tmp_path / "a" / "accuracy.svg").read_bytes()  # glyphs as paths: no font needed


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The collector's output for the committed seed-replication study (2 datasets, 2 variants, 5 seeds)."""
    from poolstudy import collect

    out = tmp_path_factory.mktemp("report")
    assert collect.main([str(STUDY), "--out", str(out), "--quiet"]) == 0
    return out


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.mark.slow
def test_report_html_is_one_self_contained_file(report):
    text = (report / "report.html").read_text()
    parser = _Tags()
    parser.feed(text)
    tags = parser.tags
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "object", "embed", "base")]
    csp = [a for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and csp[0]["content"].startswith("default-src 'none'")
    for tag, attrs in tags:  # nothing is fetched: every source is inline, links stay inside the page
        for key in ("src", "srcset", "href", "data", "poster", "action"):
            value = attrs.get(key)
            if value is None:
                continue
            assert value.startswith("data:") if key == "src" else value.startswith("#"), (tag, key, value[:80])
    assert not re.search(r"url\(|@import", text)
    figures = json.loads((report / "results.json").read_text())["files"]
    svgs = [f for f in figures if f.endswith(".svg")]
    assert sorted(svgs) == ["accuracy.svg", "accuracy_vs_compute.svg", "accuracy_vs_shift.svg", "learning_curves.svg",
                            "ranks.svg"]
    images = {a["alt"]: a["src"] for t, a in tags if t == "img"}
    inlined = [base64.b64decode(src.split(",", 1)[1]) for src in images.values()]
    for svg in svgs:  # each figure inlined as the very SVG file written next to the report
        assert (report / svg).read_bytes() in inlined, svg
        assert not (report / svg.replace(".svg", ".pdf")).exists()  # PDF on request only (--formats)
    for needle in ("Overview", "Ranks across datasets", "mean rank", "Holm", "Commands",
                   "python -m poolstudy.collect", "python train.py -m +sweeps=seed_replication"):
        assert needle in text, needle
