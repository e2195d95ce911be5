"""Per-study ``study_summary.json`` and the cross-cell ``hpo_summary.md`` / ``.csv``."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from poolstudy.hpo.budget import Budget
from poolstudy.utils.io import atomic_write_json, atomic_write_text


def final_results(study_dir: Path) -> list[dict[str, Any]]:
    """Test metrics of the completed final-seed runs under ``study_dir/final``."""
    results = []
    for metrics_file in sorted((study_dir / "final").glob("*/metrics.json")):
        m = json.loads(metrics_file.read_text())
        if m.get("status") == "complete":
            results.append({"seed": m["seed"], "val_acc": m["val_acc"], "test_acc": m["test_acc"],
                            "test_acc_raw": m.get("test_acc_raw"), "dir": str(metrics_file.parent)})
    return results


def study_summary(study: optuna.Study, budget: Budget, settings: dict[str, Any], storage: str, status: str,
                  study_dir: Path, labels: dict[str, Any]) -> dict[str, Any]:
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    finals = final_results(study_dir)
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
        "final": finals,
        "tuned_test_acc_mean": statistics.fmean(tests) if tests else None,
        "tuned_test_acc_std": statistics.stdev(tests) if len(tests) > 1 else None,
    }
    atomic_write_json(study_dir / "study_summary.json", summary)
    return summary


def write_hpo_summary(sweep_dir: Path) -> None:
    """One row per study found under ``sweep_dir``: tuned test accuracy mean ± std over the final seeds."""
    summaries = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/study_summary.json"))]
    columns = ["study", "arch", "downsample", "dataset", "status", "n_trials", "complete", "pruned", "failed",
               "best_val_acc", "final_seeds", "tuned_test_acc_mean", "tuned_test_acc_std"]
    rows = []
    for s in summaries:
        rows.append({
            "study": s["study_name"], "arch": s.get("arch"), "downsample": s.get("downsample"),
            "dataset": s.get("dataset"), "status": s["status"], "n_trials": s["n_trials"],
            "complete": s["n_complete"], "pruned": s["n_pruned"], "failed": s["n_failed"],
            "best_val_acc": s["best_val_acc"], "final_seeds": len(s["final"]),
            "tuned_test_acc_mean": s["tuned_test_acc_mean"], "tuned_test_acc_std": s["tuned_test_acc_std"],
        })
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(sweep_dir / "hpo_summary.csv", buf.getvalue())

    def pct(v):
        return "—" if v is None else f"{100 * v:.2f}"

    lines = ["| study | trials (complete/pruned/failed of budget) | best val acc % | tuned test acc % (mean ± std, n) |",
             "|---|---|---|---|"]
    for r in rows:
        spread = "" if r["tuned_test_acc_std"] is None else f" ± {pct(r['tuned_test_acc_std'])}"
        lines.append(f"| {r['study']} | {r['complete']}/{r['pruned']}/{r['failed']} of {r['n_trials']} | "
                     f"{pct(r['best_val_acc'])} | {pct(r['tuned_test_acc_mean'])}{spread} (n={r['final_seeds']}) |")
    atomic_write_text(sweep_dir / "hpo_summary.md", "\n".join(lines) + "\n")
