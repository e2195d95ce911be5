"""The tables: long CSV with full precision, and Markdown / LaTeX (booktabs) for reading and papers.

Accuracies are stored as fractions (CSV, results.json) and printed as percentages (Markdown, LaTeX).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from poolstudy.results.cells import show_value
from poolstudy.results.hpo_studies import Study
from poolstudy.results.metric_compare import MetricComparison
from poolstudy.results.records import STATE_NAMES, STATES, Job
from poolstudy.results.stats import Spread
from poolstudy.results.aggregate import INVARIANCE_KEYS, CellSummary, Summary

DASH = "—"
INVARIANCE_TITLES = {"shift_consistency": "shift consistency %", "prediction_distance_1px": "1-px prediction distance"}
SIGNIFICANT_MARK = "†"


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pct(x: float | None, digits: int = 2) -> str:
    return DASH if _missing(x) else f"{100 * x:.{digits}f}"


def pct_pm(s: Spread | None) -> str:
    if s is None or s.n == 0:
        return DASH
    return pct(s.mean) if s.n == 1 else f"{pct(s.mean)} ± {pct(s.std)}"


def pct_ci(s: Spread) -> str:
    return DASH if s.n < 2 else f"[{pct(s.ci_low)}, {pct(s.ci_high)}]"


def pvalue(p: float | None) -> str:
    return DASH if _missing(p) else f"{p:.3g}"


def number(x: float | None, digits: int = 0) -> str:
    return DASH if _missing(x) else f"{x:,.{digits}f}"


def signed(x: float | None, digits: int = 2) -> str:
    return DASH if _missing(x) else f"{x:+.{digits}f}"


def _probe(s: Spread | None, key: str) -> str:
    if key == "shift_consistency":
        return pct_pm(s)
    if s is None or s.n == 0:
        return DASH
    return f"{s.mean:.4f}" if s.n == 1 else f"{s.mean:.4f} ± {s.std:.4f}"


def panel_name(panel: Any) -> str:
    return "all jobs" if panel is None else show_value(panel)


def metric_title(metric: str) -> str:
    return metric.replace("_", " ").replace("acc", "accuracy")


def not_finished(row: CellSummary) -> str:
    counts = [(state, row.cell.count(state)) for state in STATES if state != "complete"]
    return ", ".join(f"{n} {STATE_NAMES.get(state, state)}" for state, n in counts if n)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict_mark(row: CellSummary) -> str:
    verdict = row.verdict
    if verdict in ("better", "worse"):
        return f"{verdict}{SIGNIFICANT_MARK}"
    return "n.s." if verdict == "n.s." else ""


# ---------------------------------------------------------------- long (one row per cell) ----------

def summary_frame(summary: Summary) -> pd.DataFrame:
    metric = summary.metric
    grouping = summary.grouping
    records = []
    for row in summary.rows:
        cell = row.cell
        record: dict[str, Any] = {}
        if grouping.panel_key:
            record[grouping.panel_key] = show_value(cell.panel)
        record.update({key: show_value(value) for key, value in cell.values.items()})
        record["variant"] = row.label
        record["n_finished"] = row.metric.n
        record["n_expected"] = cell.expected
        record.update({f"n_{state}": cell.count(state) for state in STATES})
        record.update({f"{metric}_mean": row.metric.mean, f"{metric}_std": row.metric.std,
                       f"{metric}_ci95_low": row.metric.ci_low, f"{metric}_ci95_high": row.metric.ci_high,
                       "val_acc_mean": row.val_acc.mean, "val_acc_std": row.val_acc.std})
        record.update(row.costs)
        for key in INVARIANCE_KEYS:
            probe = row.invariance.get(key)
            record[f"{key}_mean"] = probe.mean if probe else None
            record[f"{key}_std"] = probe.std if probe else None
        comparison = row.comparison
        record.update({
            "baseline": row.baseline, "is_baseline": row.is_baseline, "best": row.best,
            "diff": comparison.diff if comparison else None,
            "hedges_g": comparison.hedges_g if comparison else None,
            "p_welch": comparison.p_welch if comparison else None,
            "p_welch_holm": row.p_welch_holm if comparison else None,
            "p_mwu": comparison.p_mwu if comparison else None,
            "p_mwu_holm": row.p_mwu_holm if comparison else None,
            "significant": row.significant, "verdict": row.verdict,
            "seeds": ";".join(show_value(s) for s in row.seeds),
            "values": ";".join(repr(v) for v in row.values),
        })
        records.append(record)
    return pd.DataFrame.from_records(records)


def jobs_frame(jobs: list[Job], labels: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """One row per job; ``labels`` maps a job path to its (dataset, variant)."""
    records = []
    for job in jobs:
        panel, variant = labels.get(job.path, ("", ""))
        records.append({
            "path": job.path, "status": job.status, "error": job.error, "hpo_role": job.hpo_role,
            "study": job.study, "trial": job.trial, "dataset": panel, "variant": variant,
            "seed": show_value(job.config_value("seed")),
            **{key: job.number(key) for key in ("test_acc", "val_acc", "test_acc_raw", "params", "macs",
                                                 "train_time_s", "images_per_s", *INVARIANCE_KEYS)},
            "git_commit": job.git_commit, "git_dirty": job.git_dirty if job.metrics else None,
        })
    return pd.DataFrame.from_records(records)


# ---------------------------------------------------------------- Markdown ------------------------------

def overview_markdown(summary: Summary) -> str:
    """Variants x datasets, the table one would put in a paper."""
    panels = summary.panels
    labels = list(dict.fromkeys(row.label for panel in panels for row in summary.in_panel(panel)))
    by_key = {(row.cell.panel, row.label): row for row in summary.rows}
    body = []
    for label in labels:
        is_base = any(r.is_baseline for r in summary.rows if r.label == label)
        line = [f"{label} (baseline)" if is_base else label]
        for panel in panels:
            row = by_key.get((panel, label))
            if row is None:
                line.append(DASH)
                continue
            text = pct_pm(row.metric)
            if row.best:
                text = f"**{text}**"
            mark = verdict_mark(row)
            line.append(f"{text} ({row.metric.n}/{row.cell.expected})" + (f" {mark}" if mark else ""))
        body.append(line)
    return markdown_table(["variant", *[panel_name(p) for p in panels]], body)


def panel_markdown(summary: Summary, panel: Any) -> str:
    rows = summary.in_panel(panel)
    probes = [key for key in INVARIANCE_KEYS if any(key in row.invariance for row in rows)]
    headers = ["variant", "n", f"{metric_title(summary.metric)} % (mean ± std)", "95% CI",
               f"Δ vs {summary.baseline} (pp)", "Hedges g", "p Welch (Holm)", "p MWU (Holm)", "verdict",
               "params", "MACs", "train time (s)", "images/s"]
    headers += [INVARIANCE_TITLES[key] for key in probes]
    headers.append("not finished")
    body = []
    for row in rows:
        comparison = row.comparison
        mean = pct_pm(row.metric)
        line = [row.label, f"{row.metric.n}/{row.cell.expected}", f"**{mean}**" if row.best else mean,
                pct_ci(row.metric),
                signed(100 * comparison.diff) if comparison else DASH,
                signed(comparison.hedges_g) if comparison else DASH,
                f"{pvalue(comparison.p_welch)} ({pvalue(row.p_welch_holm)})" if comparison else DASH,
                f"{pvalue(comparison.p_mwu)} ({pvalue(row.p_mwu_holm)})" if comparison else DASH,
                row.verdict + (" (best)" if row.best else ""),
                number(row.costs["params"]), number(row.costs["macs"]), number(row.costs["train_time_s"], 1),
                number(row.costs["images_per_s"])]
        line += [_probe(row.invariance.get(key), key) for key in probes]
        line.append(not_finished(row) or DASH)
        body.append(line)
    return markdown_table(headers, body)


def shift_markdown(summary: Summary, panel: Any) -> str | None:
    rows = [row for row in summary.in_panel(panel) if row.acc_vs_shift]
    if not rows:
        return None
    shifts = sorted({shift for row in rows for shift in row.acc_vs_shift})
    body = [[row.label, *[pct_pm(row.acc_vs_shift.get(s)) for s in shifts]] for row in rows]
    return markdown_table(["variant", *[f"shift {s:g} px" for s in shifts]], body)


def tuning_markdown(summary: Summary) -> str | None:
    if not summary.tuning_gains:
        return None
    body = []
    for gain in summary.tuning_gains:
        c = gain.comparison
        body.append([panel_name(gain.tuned.cell.panel), gain.untuned.label,
                     f"{pct_pm(gain.untuned.metric)} ({gain.untuned.metric.n})",
                     f"{pct_pm(gain.tuned.metric)} ({gain.tuned.metric.n})",
                     signed(100 * c.diff) if c else DASH,
                     f"{pvalue(c.p_welch)} ({pvalue(gain.p_welch_holm)})" if c else DASH])
    return markdown_table(["dataset", "variant", "untuned % (n)", "tuned % (n)", "Δ (pp)", "p Welch (Holm)"], body)


def format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items())) or DASH


def studies_markdown(studies: list[Study]) -> str | None:
    if not studies:
        return None
    body = []
    for study in studies:
        counts = study.counts
        body.append([study.name, panel_name(study.panel), study.label,
                     f"{counts.get('complete', 0)}/{counts.get('pruned', 0)}/{counts.get('failed', 0)}",
                     pct(study.best_value), format_params(study.best_params),
                     f"{study.sampler or DASH} (seed {show_value(study.sampler_seed)})" if study.sampler else DASH])
    return markdown_table(["study", "dataset", "variant", "trials complete/pruned/failed", "best val acc %",
                           "best hyper-parameters", "sampler"], body)


# ---------------------------------------------------------------- LaTeX (booktabs) ----------------------

_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def _latex_pm(s: Spread, bold: bool) -> str:
    if s.n == 0:
        return "--"
    body = pct(s.mean) if s.n == 1 else f"{pct(s.mean)} \\pm {pct(s.std)}"
    return f"$\\mathbf{{{body}}}$" if bold else f"${body}$"


def _styler_latex(frame: pd.DataFrame, caption: str, label: str, align: str) -> str:
    return frame.style.hide(axis="index").to_latex(
        hrules=True, column_format=align, caption=caption, label=label, position="htbp", position_float="centering")


def overview_latex(summary: Summary) -> str:
    panels = summary.panels
    labels = list(dict.fromkeys(row.label for panel in panels for row in summary.in_panel(panel)))
    by_key = {(row.cell.panel, row.label): row for row in summary.rows}
    records = []
    for label in labels:
        record = {"Variant": latex_escape(label)}
        for panel in panels:
            row = by_key.get((panel, label))
            text = "--" if row is None else _latex_pm(row.metric, row.best)
            if row is not None and row.significant:
                text += "$^\\dagger$"
            record[latex_escape(panel_name(panel))] = text
        records.append(record)
    caption = (f"{latex_escape(metric_title(summary.metric)).capitalize()} (\\%), mean $\\pm$ standard deviation over "
               f"seeds. Best per dataset in bold; $^\\dagger$: differs from {latex_escape(summary.baseline)} "
               f"(Welch's t-test, Holm-adjusted $p < {summary.alpha:g}$); unmarked differences are not significant.")
    return _styler_latex(pd.DataFrame.from_records(records), caption, "tab:poolstudy-overview",
                         "l" + "c" * len(panels))


def detail_latex(summary: Summary) -> str:
    records = []
    for panel in summary.panels:
        for row in summary.in_panel(panel):
            c = row.comparison
            records.append({
                "Dataset": latex_escape(panel_name(panel)), "Variant": latex_escape(row.label),
                "$n$": f"{row.metric.n}/{row.cell.expected}", "Mean $\\pm$ std": _latex_pm(row.metric, row.best),
                "95\\% CI": "--" if row.metric.n < 2 else f"[{pct(row.metric.ci_low)}, {pct(row.metric.ci_high)}]",
                "$\\Delta$ (pp)": f"${signed(100 * c.diff)}$" if c else "--",
                "$g$": f"${signed(c.hedges_g)}$" if c and not _missing(c.hedges_g) else "--",
                "$p$ Welch (Holm)": f"{pvalue(c.p_welch)} ({pvalue(row.p_welch_holm)})" if c else "--",
                "$p$ MWU (Holm)": f"{pvalue(c.p_mwu)} ({pvalue(row.p_mwu_holm)})" if c else "--",
                "Params": number(row.costs["params"]).replace(",", "{,}"),
                "MACs": number(row.costs["macs"]).replace(",", "{,}"),
            })
    caption = (f"{latex_escape(metric_title(summary.metric)).capitalize()} (\\%) per variant against "
               f"{latex_escape(summary.baseline)}: $n$ finished/expected seeds, 95\\% Student-t interval, "
               "difference in percentage points, Hedges' $g$, raw and Holm-adjusted $p$-values.")
    return _styler_latex(pd.DataFrame.from_records(records), caption, "tab:poolstudy-detail", "ll" + "r" * 9)


# ---------------------------------------------------------------- two metrics side by side ------------

def _side(row: CellSummary) -> list[str]:
    c = row.comparison
    mean = pct_pm(row.metric)
    return [f"**{mean}**" if row.best else mean,
            signed(100 * c.diff) if c else DASH,
            pvalue(row.p_welch_holm) if c else DASH,
            verdict_mark(row) or row.verdict]


def metric_comparison_markdown(comparison: MetricComparison) -> str:
    """Per dataset and variant both metrics with their tests, the sign flip and the paired change; then per
    dataset the ranking under each metric."""
    first, second = (metric_title(m) for m in comparison.metrics)
    headers = ["dataset", "variant", f"{first} %", "Δ (pp)", "p Welch (Holm)", "verdict",
               f"{second} %", "Δ (pp)", "p Welch (Holm)", "verdict", "Δ changes sign",
               f"{second} − {first} (pp, paired)"]
    body = []
    for row in comparison.rows:
        flips = row.sign_flips
        change = row.change
        body.append([panel_name(row.first.cell.panel), row.first.label, *_side(row.first), *_side(row.second),
                     DASH if flips is None else ("yes" if flips else "no"),
                     DASH if change.n == 0 else (signed(100 * change.mean) if change.n == 1 else
                                                 f"{signed(100 * change.mean)} ± {100 * change.std:.2f}")])
    ranking = [[panel_name(k.panel), " > ".join(k.first) or DASH, " > ".join(k.second) or DASH,
                "yes" if k.flips else "no"] for k in comparison.rankings]
    return (markdown_table(headers, body) + "\n\n"
            + markdown_table(["dataset", f"ranking by {first} (mean)", f"ranking by {second} (mean)", "ranking changes"],
                             ranking))
