"""Per-study ``study_summary.json`` and the cross-cell ``hpo_summary.md`` / ``.csv``."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Any

import optuna

from poolstudy.hpo.budget import Budget
from poolstudy.jobfolder import HPO_SUMMARY_CSV, HPO_SUMMARY_MD, STUDY_SUMMARY
from poolstudy.hpo.finals import best_trial, final_results, trial_of
from poolstudy.utils.io import atomic_write_json, atomic_write_text


def study_summary(study: optuna.Study, budget: Budget, settings: dict[str, Any], storage: str, status: str,
                  study_dir: Path, labels: dict[str, Any]) -> dict[str, Any]:
    best = best_trial(study)
    finals = final_results(study_dir, best.number if best else None)  # only the best trial's final runs
    tests = [f["test_acc"] for f in finals]
    summary = {
        "study_name": study.study_name,
        "status": status,
        "cell": settings["cell"],
        **labels,
        "best_params": best.params if best else None,
        "best_val_acc": best.value if best else None,
        "best_trial": best.number if best else None,
        "n_trials": budget.n_trials,
        "n_complete": budget.complete,
        "n_pruned": budget.pruned,
        "n_failed": budget.failed,
        "sampler": settings["sampler"],
        "sampler_seed": settings["sampler_seed"],
        "pruner": settings["pruner"],
        "search_space": settings["search_space"],
        "epochs": settings["epochs"],
        "storage": storage,
        "final_seeds": settings["final_seeds"],
        "final_trial": best.number if best else None,
        "final": finals,
        "tuned_test_acc_mean": statistics.fmean(tests) if tests else None,
        "tuned_test_acc_std": statistics.stdev(tests) if len(tests) > 1 else None,
    }
    atomic_write_json(study_dir / STUDY_SUMMARY, summary)
    return summary


def _final_trial(entry: dict[str, Any]) -> int | None:
    """The trial a study_summary.json "final" entry retrained (summaries before "trial" was recorded: its folder)."""
    if "trial" in entry:
        return entry["trial"]
    return trial_of(Path(entry["dir"])) if entry.get("dir") else None


def write_hpo_summary(sweep_dir: Path) -> None:
    """One row per study found under ``sweep_dir``: tuned test accuracy mean ± std over the final seeds."""
    summaries = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/study_summary.json"))]
    columns = ["study", "arch", "downsample", "dataset", "status", "n_trials", "complete", "pruned", "failed",
               "best_trial", "best_val_acc", "final_seeds", "tuned_test_acc_mean", "tuned_test_acc_std"]
    rows = []
    for s in summaries:
        # never pair one trial's validation accuracy with another trial's test accuracy
        finals = [f for f in s.get("final", []) if s.get("best_trial") is not None
                  and _final_trial(f) == s["best_trial"]]
        tests = [f["test_acc"] for f in finals]
        rows.append({
            "study": s["study_name"], "arch": s.get("arch"), "downsample": s.get("downsample"),
            "dataset": s.get("dataset"), "status": s["status"], "n_trials": s["n_trials"],
            "complete": s["n_complete"], "pruned": s["n_pruned"], "failed": s["n_failed"],
            "best_trial": s.get("best_trial"), "best_val_acc": s["best_val_acc"], "final_seeds": len(finals),
            "tuned_test_acc_mean": statistics.fmean(tests) if tests else None,
            "tuned_test_acc_std": statistics.stdev(tests) if len(tests) > 1 else None,
        })
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(sweep_dir / HPO_SUMMARY_CSV, buf.getvalue())

    def pct(v):
        return "—" if v is None else f"{100 * v:.2f}"

    lines = ["| study | status | trials (complete/pruned/failed of budget) | best trial | best val acc % | "
             "tuned test acc % of the best trial's final runs (mean ± std, n) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        spread = "" if r["tuned_test_acc_std"] is None else f" ± {pct(r['tuned_test_acc_std'])}"
        best = "—" if r["best_trial"] is None else r["best_trial"]
        lines.append(f"| {r['study']} | {r['status']} | {r['complete']}/{r['pruned']}/{r['failed']} of {r['n_trials']} | "
                     f"{best} | {pct(r['best_val_acc'])} | {pct(r['tuned_test_acc_mean'])}{spread} (n={r['final_seeds']}) |")
    atomic_write_text(sweep_dir / HPO_SUMMARY_MD, "\n".join(lines) + "\n")
