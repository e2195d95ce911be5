"""Everything the collector writes: Markdown (summary.md, index.md), CSV, LaTeX, results.json and figures.

Every file is written atomically, and nothing in the output depends on when or where it was made, so
collecting the same folders twice gives identical files.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poolstudy.results import plots, tables
from poolstudy.results.cells import TUNING, Cell, show_value
from poolstudy.results.hpo_studies import Study
from poolstudy.results.metric_compare import MetricComparison, record as comparison_record
from poolstudy.results.records import COMPLETE, MISSING, STATE_NAMES, STATES, Job, Skipped
from poolstudy.results.replicates import Duplicate
from poolstudy.results.screening import Excluded
from poolstudy.results.stats import Spread
from poolstudy.results.aggregate import INVARIANCE_KEYS, CellSummary, Summary
from poolstudy.utils.io import atomic_write_json, atomic_write_text

SUMMARY_MD = "summary.md"
INDEX_MD = "index.md"
SUMMARY_CSV = "summary.csv"
JOBS_CSV = "jobs.csv"
SUMMARY_TEX = "summary.tex"
RESULTS_JSON = "results.json"
REPORT_HTML = "report.html"  # poolstudy.results.html_report
MAX_LISTED = 50  # unfinished jobs listed in Markdown; jobs.csv and results.json hold all


@dataclass
class Collection:
    command: str
    inputs: list[str]
    jobs: list[Job]
    cells: list[Cell]
    summary: Summary
    studies: list[Study]
    flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)  # repeated folders, each counted once
    excluded: list[Excluded] = field(default_factory=list)  # jobs whose numbers cannot be reported
    skipped: list[Skipped] = field(default_factory=list)  # folders that are not poolstudy's
    metric_comparison: MetricComparison | None = None  # --compare-metrics

    @property
    def members(self) -> list[Job]:
        return [job for job in self.jobs if job.hpo_role != "trial"]

    @property
    def trials(self) -> list[Job]:
        return [job for job in self.jobs if job.hpo_role == "trial"]


def _clean(value: Any) -> Any:
    """JSON-ready: NaN becomes null, tuples lists, missing keys null."""
    if value is MISSING:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _spread(s: Spread | None) -> dict | None:
    if s is None:
        return None
    return {"n": s.n, "mean": s.mean, "std": s.std, "ci95": [s.ci_low, s.ci_high]}


def _cell_record(row: CellSummary, metric: str) -> dict:
    c = row.comparison
    return {
        "panel": row.cell.panel, "keys": row.cell.values, "variant": row.label,
        "n_finished": row.metric.n, "n_expected": row.cell.expected,
        "counts": {state: row.cell.count(state) for state in STATES},
        metric: _spread(row.metric), "val_acc": _spread(row.val_acc),
        "seeds": row.seeds, "values": row.values, "jobs": row.jobs,
        "not_finished": [{"path": j.path, "status": j.status, "error": j.error}
                         for j in row.cell.jobs if j.status != COMPLETE],
        **row.costs,
        **{key: _spread(row.invariance.get(key)) for key in INVARIANCE_KEYS},
        "acc_vs_shift": {f"{shift:g}": _spread(s) for shift, s in row.acc_vs_shift.items()} or None,
        "is_baseline": row.is_baseline, "baseline": row.baseline, "best": row.best,
        "comparison": None if c is None else {
            "diff": c.diff, "hedges_g": c.hedges_g, "p_welch": c.p_welch, "p_welch_holm": row.p_welch_holm,
            "p_mwu": c.p_mwu, "p_mwu_holm": row.p_mwu_holm, "significant": row.significant},
        "verdict": row.verdict,
    }


def _study_record(study: Study) -> dict:
    numbers, best = study.best_so_far()
    budgets, means, stds = study.expected_max()
    return {
        "name": study.name, "source": study.source, "panel": study.panel, "variant": study.label,
        "counts": study.counts, "best_value": study.best_value, "best_params": study.best_params,
        "sampler": study.sampler, "sampler_seed": study.sampler_seed,
        "trials": [{"number": t.number, "state": t.state, "value": t.value} for t in study.trials],
        "best_so_far": {"trial": numbers, "best": best},
        "expected_max": {"budget": budgets, "mean": means, "std": stds},
    }


def _job_record(job: Job) -> dict:
    return {"path": job.path, "status": job.status, "error": job.error, "hpo_role": job.hpo_role,
            "study": job.study, "trial": job.trial, "seed": job.config_value("seed"),
            "git_commit": job.git_commit}


def results_json(col: Collection, files: list[str]) -> dict:
    summary = col.summary
    return _clean({
        "command": col.command, "inputs": col.inputs, "metric": summary.metric, "baseline": summary.baseline,
        "alpha": summary.alpha,
        "grouping": {"row_keys": list(summary.grouping.row_keys), "panel_key": summary.grouping.panel_key},
        "tests": "Welch's t-test and Mann-Whitney U (two-sided) against the baseline on the same dataset; "
                 "Holm-adjusted across the table; effect size Hedges' g; 95% Student-t intervals.",
        "counts": _counts(col.members), "trial_counts": _counts(col.trials),
        "cells": [_cell_record(row, summary.metric) for row in summary.rows],
        "tuning": [{"panel": g.tuned.cell.panel, "variant": g.untuned.label, "untuned": _spread(g.untuned.metric),
                    "tuned": _spread(g.tuned.metric),
                    "diff": g.comparison.diff if g.comparison else None,
                    "p_welch": g.comparison.p_welch if g.comparison else None, "p_welch_holm": g.p_welch_holm}
                   for g in summary.tuning_gains],
        "studies": [_study_record(s) for s in col.studies],
        "flags": col.flags, "notes": summary.notes, "warnings": col.warnings,
        "jobs": [_job_record(job) for job in col.jobs],
        "counted_once": [{"panel": d.panel, "variant": d.label, "seed": d.seed, "kept": d.kept.path,
                          "repeats": [j.path for j in d.dropped], "values": d.values} for d in col.duplicates],
        "excluded": [{**_job_record(e.job), "reason": e.reason} for e in col.excluded],
        "skipped": [{"path": s.path, "reason": s.reason} for s in col.skipped],
        "files": files,
        **({"metric_comparison": comparison_record(col.metric_comparison)} if col.metric_comparison else {}),
    })


def _counts(jobs: list[Job]) -> dict[str, int]:
    counts = Counter(job.status for job in jobs)
    return {state: counts.get(state, 0) for state in STATES}


def _count_line(jobs: list[Job]) -> str:
    counts = _counts(jobs)
    return ", ".join(f"{counts[state]} {STATE_NAMES.get(state, state)}" for state in STATES)


#: The sections of summary.md, in order. ``head`` (counts, grouping, tests) and the sections that report
#: problems (``unfinished``, ``not_counted``, ``flags``, ``notes``, ``warnings``) are always shown; the others can be
#: picked, e.g. by a RESULTS.md block (``--sections``).
SECTIONS = ("head", "overview", "metrics", "datasets", "tuning", "hpo", "unfinished", "not_counted", "flags", "notes",
            "warnings")
ALWAYS_SHOWN = ("head", "unfinished", "not_counted", "flags", "notes", "warnings")


def summary_sections(col: Collection) -> list[tuple[str, str]]:
    """summary.md as (section key, Markdown) pairs, key from SECTIONS; absent sections are left out."""
    summary = col.summary
    grouping = summary.grouping
    title = tables.metric_title(summary.metric)
    variant_keys = ", ".join(f"`{k}`" for k in grouping.row_keys if k != TUNING) or "none"
    head = [
        f"# Results: {title}",
        f"{len(col.members)} jobs in {len(col.cells)} cells from {', '.join(f'`{p}`' for p in col.inputs) or 'none'}: "
        f"{_count_line(col.members)}." + (f" Also {len(col.trials)} HPO trials ({_count_line(col.trials)})."
                                          if col.trials else "") + _not_counted(col),
        f"Variants by {variant_keys}" + (" and tuning" if TUNING in grouping.row_keys else "") +
        (f"; datasets by `{grouping.panel_key}`" if grouping.panel_key else "") +
        f". Baseline `{summary.baseline}`; Welch's t-test (Mann–Whitney U alongside), both two-sided, "
        f"Holm-adjusted across the table, α = {summary.alpha:g}; effect size Hedges' g; 95% Student-t intervals.",
    ]
    if col.flags:
        head.append(f"**{len(col.flags)} flag(s): check the Flags section before comparing.**")
    if col.excluded:
        head.append(f"**{len(col.excluded)} job(s) excluded: see the Excluded section.**")
    sections = [("head", head),
                ("overview", ["## Overview", tables.overview_markdown(summary),
                              f"{title.capitalize()} in %, mean ± std over seeds (finished/expected jobs). Best per "
                              f"dataset in **bold**; {tables.SIGNIFICANT_MARK}: differs from the baseline "
                              f"(Holm-adjusted Welch p < {summary.alpha:g}); n.s.: the difference is not "
                              "significant."])]
    comparison = col.metric_comparison
    if comparison is not None:
        first, second = (tables.metric_title(m) for m in comparison.metrics)
        sections.append(("metrics", [
            f"## {first.capitalize()} vs {second}",
            tables.metric_comparison_markdown(comparison),
            f"The same jobs under both metrics (`{comparison.metrics[0]}`, `{comparison.metrics[1]}`), mean ± std "
            f"over seeds in %. Each metric's differences from the baseline are tested as above and Holm-adjusted "
            f"across the table, each metric on its own (as `--metric` with that metric gives them); "
            f"{tables.SIGNIFICANT_MARK}: significant at α = {summary.alpha:g}. \"Δ changes sign\": the variant is "
            f"above its baseline under one metric and below it under the other. The paired change is over the "
            f"same jobs. Rankings order the variants by mean; ties and significance aside."]))
    datasets: list[str] = []
    for panel in summary.panels:
        datasets += [f"## {tables.panel_name(panel)}", tables.panel_markdown(summary, panel)]
        shift = tables.shift_markdown(summary, panel)
        if shift:
            datasets += [f"### Accuracy vs shift on {tables.panel_name(panel)} (%, mean ± std)", shift]
    sections.append(("datasets", datasets))
    tuning = tables.tuning_markdown(summary)
    if tuning:
        sections.append(("tuning", ["## Tuned vs untuned", tuning]))
    studies = tables.studies_markdown(col.studies)
    if studies:
        sections.append(("hpo", ["## HPO studies", studies]))
    unfinished = [job for job in col.members if job.status != COMPLETE]
    if unfinished:
        body = [[job.path, STATE_NAMES.get(job.status, job.status), _first_line(job.error)]
                for job in unfinished[:MAX_LISTED]]
        parts = ["## Not finished", tables.markdown_table(["job", "status", "error"], body)]
        if len(unfinished) > MAX_LISTED:
            parts.append(f"… and {len(unfinished) - MAX_LISTED} more (all in {JOBS_CSV}).")
        sections.append(("unfinished", parts))
    not_counted = _not_counted_sections(col)
    if not_counted:
        sections.append(("not_counted", not_counted))
    for key, heading, items in (("flags", "Flags", col.flags), ("notes", "Notes", summary.notes),
                                ("warnings", "Warnings", col.warnings)):
        if items:
            sections.append((key, [f"## {heading}", "\n".join(f"- {item}" for item in items)]))
    return [(key, "\n\n".join(parts)) for key, parts in sections if parts]


def summary_markdown(col: Collection) -> str:
    return "\n\n".join(text for _, text in summary_sections(col)) + "\n"


def _not_counted(col: Collection) -> str:
    parts = []
    repeats = sum(len(d.dropped) for d in col.duplicates)
    if repeats:
        parts.append(f"{repeats} repeated job folder{'s' if repeats != 1 else ''} (see Counted once)")
    if col.excluded:
        parts.append(f"{len(col.excluded)} excluded job{'s' if len(col.excluded) != 1 else ''} (see Excluded)")
    if col.skipped:
        parts.append(f"{len(col.skipped)} skipped folder{'s' if len(col.skipped) != 1 else ''}, not poolstudy's "
                     "(see Skipped)")
    return f" Not counted: {', '.join(parts)}." if parts else ""


def _not_counted_sections(col: Collection) -> list[str]:
    parts = []
    if col.duplicates:
        body = [[d.where, show_value(d.seed), d.kept.path, ", ".join(j.path for j in d.dropped)]
                for d in col.duplicates]
        parts += ["## Counted once",
                  "Folders of one cell with the same seed and the same settings hold one job run more than once; "
                  "each seed counts once.",
                  tables.markdown_table(["cell", "seed", "counted", "repeated in"], body)]
    if col.excluded:
        parts += ["## Excluded", "Not in any table or figure: their numbers cannot be labelled with their config, "
                                 "data or trial.",
                  tables.markdown_table(["job", "reason"], [[e.path, e.reason] for e in col.excluded])]
    if col.skipped:
        parts += ["## Skipped", tables.markdown_table(["folder", "reason"], [[s.path, s.reason] for s in col.skipped])]
    return parts


def _first_line(text: str | None, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def index_markdown(col: Collection, summary_md: str, figures: list[tuple[str, str]], extra: list[str] = (),
                   formats: tuple[str, ...] = ("png",), html: bool = False) -> str:
    parts = ["# poolstudy report", f"Made by `{col.command}`.", summary_md.split("\n", 1)[1].strip(), *extra]
    if figures:
        parts.append("## Figures")
        parts += [f"![{caption}]({name})\n\n*{caption}*" for name, caption in figures]
    also = [f.upper() for f in formats if f != "png"]
    parts += ["## Files", f"`{SUMMARY_CSV}` (one row per cell, full precision), `{JOBS_CSV}` (one row per job), "
                          f"`{SUMMARY_TEX}` (booktabs tables), `{RESULTS_JSON}` (everything above, machine-readable)"
                          + (f", `{REPORT_HTML}` (this report in one self-contained file)" if html else "")
                          + (f"; each figure also as {' and '.join(also)}." if figures and also else ".")]
    return "\n\n".join(parts) + "\n"


def job_labels(cells: list[Cell]) -> dict[str, tuple[str, str]]:
    return {job.path: (show_value(cell.panel) if cell.panel is not None else "", cell.label)
            for cell in cells for job in cell.jobs}


def write_outputs(col: Collection, out: Path, with_plots: bool = True, formats: tuple[str, ...] = plots.DEFAULT_FORMATS,
                  html: bool = True) -> tuple[str, list[str]]:
    """Writes every output into ``out``; returns the summary Markdown and the files written. ``formats``:
    the figures' file formats (``plots.FORMATS``; PNG always); ``html``: also report.html. A figure or
    format not written this time is removed, so that no file of an earlier collection is left stale."""
    from poolstudy.results import html_report, rank

    formats = ("png", *[f for f in formats if f != "png"])
    out.mkdir(parents=True, exist_ok=True)
    summary_md = summary_markdown(col)
    figures = plots.write_figures(col.summary, col.studies, out, formats) if with_plots else []
    written = {name for name, _ in figures}
    for name in plots.FIGURE_NAMES:
        kept = formats if name in written else ()
        for stale in plots.format_names(name, tuple(f for f in plots.FORMATS if f not in kept)):
            (out / stale).unlink(missing_ok=True)
    ranking = rank.rank_variants(col.summary)
    ranks_md = [] if ranking is None else ["## Ranks across datasets", rank.caption(ranking),
                                           rank.ranking_markdown(ranking)]

    atomic_write_text(out / SUMMARY_MD, summary_md)
    atomic_write_text(out / INDEX_MD, index_markdown(col, summary_md, figures, ranks_md, formats, html))
    if html:
        atomic_write_text(out / REPORT_HTML, html_report.render(col, summary_sections(col), figures, out, ranking,
                                                                formats))
    else:
        (out / REPORT_HTML).unlink(missing_ok=True)
    atomic_write_text(out / SUMMARY_CSV, tables.summary_frame(col.summary).to_csv(index=False, lineterminator="\n"))
    atomic_write_text(out / JOBS_CSV, tables.jobs_frame(col.jobs, job_labels(col.cells)).to_csv(
        index=False, lineterminator="\n"))
    atomic_write_text(out / SUMMARY_TEX, "% Needs \\usepackage{booktabs}.\n" + tables.overview_latex(col.summary)
                      + "\n" + tables.detail_latex(col.summary))
    files = [SUMMARY_MD, INDEX_MD, SUMMARY_CSV, JOBS_CSV, SUMMARY_TEX, RESULTS_JSON, *([REPORT_HTML] if html else []),
             *[f for n, _ in figures for f in plots.format_names(n, formats)]]
    record = results_json(col, files)
    record["ranking"] = _clean(rank.ranking_record(ranking)) if ranking is not None else None
    atomic_write_json(out / RESULTS_JSON, record)
    return summary_md, files
