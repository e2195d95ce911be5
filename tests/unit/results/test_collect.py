"""The results collector on output trees made here (with broken jobs) and on one real small multirun.

Every statistic the collector prints is recomputed here directly with numpy/scipy from the numbers the
test wrote, and every table format is parsed back."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from helpers import ROOT, require_real
from poolstudy.results.stats import expected_max, holm
from helpers.records import ACC, BROKEN, MACS, cells_by, collect, make_hpo_sweep, write_job

@pytest.fixture()
def study_tree(tmp_path) -> Path:
    """A multirun folder: 3 operators x 2 datasets x 5 seeds, each cell with one broken extra job."""
    sweep = tmp_path / "multirun" / "2026-01-01" / "12-00-00"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    number = 0
    for (dataset, operator), accs in ACC.items():
        for seed, acc in enumerate(accs):
            write_job(sweep / str(number), operator, dataset, seed, acc)
            number += 1
        if (dataset, operator) in BROKEN:
            write_job(sweep / str(number), operator, dataset, len(accs), state=BROKEN[(dataset, operator)])
            number += 1
    # A snapshot Hydra never finished writing: the job must be placed by its metrics.json.
    broken_cfg = sweep / str(number - 1) / ".hydra" / "config.yaml"
    assert "avgpool" in broken_cfg.read_text() and "fashion_mnist" in broken_cfg.read_text()
    broken_cfg.write_text("model: {downsample: [unclosed\n")
    return sweep


def holm_reference(pvalues: list[float]) -> list[float]:
    """Holm written independently: the k-th smallest p becomes max over j <= k of min(1, (m - j) p_(j))."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    for k, i in enumerate(order):
        adjusted[i] = max(min(1.0, (m - j) * pvalues[order[j]]) for j in range(k + 1))
    return adjusted


def hedges_reference(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return (a.mean() - b.mean()) / pooled * (1 - 3 / (4 * (len(a) + len(b)) - 9))


def test_holm_on_a_worked_example():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm([0.2, float("nan")])[1]) and holm([0.2, float("nan")])[0] == pytest.approx(0.2)


def test_expected_max_equals_brute_force_enumeration():
    values = [0.91, 0.95, 0.93, 0.95]
    means, stds = expected_max(values)
    for n in range(1, len(values) + 1):
        maxima = [max(draw) for draw in itertools.product(values, repeat=n)]  # all N^n equally likely draws
        assert means[n - 1] == pytest.approx(np.mean(maxima), abs=1e-12)
        assert stds[n - 1] == pytest.approx(np.std(maxima), abs=1e-9)
    assert means[0] == pytest.approx(np.mean(values)) and means[-1] < max(values)


def test_statistics_equal_scipy_and_broken_jobs_are_counted(study_tree, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, stderr = collect(study_tree, "--out", out, "--no-plots", capsys=capsys)
    assert code == 0, stderr
    results = json.loads((out / "results.json").read_text())
    cells = cells_by(results)
    assert set(cells) == set(ACC)

    comparisons = []
    for (dataset, operator), accs in ACC.items():
        cell = cells[(dataset, operator)]
        n = len(accs)
        assert cell["n_finished"] == n and cell["values"] == accs and cell["seeds"] == list(range(n))
        assert cell["n_expected"] == n + ((dataset, operator) in BROKEN)
        if (dataset, operator) in BROKEN:
            assert cell["counts"][BROKEN[(dataset, operator)]] == 1
        s = cell["test_acc"]
        assert s["mean"] == pytest.approx(np.mean(accs), abs=1e-15)
        assert s["std"] == pytest.approx(np.std(accs, ddof=1), rel=1e-12)
        low, high = stats.t.interval(0.95, n - 1, loc=np.mean(accs), scale=stats.sem(accs))
        assert s["ci95"] == pytest.approx([low, high], rel=1e-12)
        assert cell["macs"] == MACS[operator] and cell["params"] == 52_174
        assert cell["train_time_s"] == pytest.approx(np.mean([10.0 + i for i in range(n)]))
        if operator == "maxpool":
            assert cell["is_baseline"] and cell["comparison"] is None
            continue
        base = ACC[(dataset, "maxpool")]
        c = cell["comparison"]
        assert c["diff"] == pytest.approx(np.mean(accs) - np.mean(base), abs=1e-15)
        assert c["p_welch"] == pytest.approx(stats.ttest_ind(accs, base, equal_var=False).pvalue, rel=1e-12)
        assert c["p_mwu"] == pytest.approx(stats.mannwhitneyu(accs, base, alternative="two-sided").pvalue, rel=1e-12)
        assert c["hedges_g"] == pytest.approx(hedges_reference(accs, base), rel=1e-12)
        comparisons.append(c)
    for family in ("p_welch", "p_mwu"):
        expected = holm_reference([c[family] for c in comparisons])
        assert [c[f"{family}_holm"] for c in comparisons] == pytest.approx(expected, rel=1e-12)
    for c in comparisons:
        assert c["significant"] == (c["p_welch_holm"] < 0.05)
    # strided is clearly worse on both datasets; avgpool is indistinguishable from maxpool
    assert cells[("mnist", "strided")]["verdict"] == "worse" and cells[("fashion_mnist", "strided")]["verdict"] == "worse"
    assert cells[("mnist", "avgpool")]["verdict"] == "n.s."
    assert cells[("mnist", "maxpool")]["best"] and cells[("fashion_mnist", "maxpool")]["best"]

    assert results["counts"] == {"complete": 31, "invalid": 1, "failed": 1, "pruned": 1, "partial": 1, "unreadable": 1}
    # one-line warnings naming the broken files; nothing silently dropped
    warning_lines = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warning_lines) == 2
    assert any("metrics.json" in w and "unreadable" in w for w in warning_lines)
    assert any(".hydra/config.yaml" in w and "YAML" in w for w in warning_lines)
    assert "## Not finished" in stdout and "running or killed" in stdout and "failed because of a test" in stdout
    assert stdout == (out / "summary.md").read_text()


def parse_pm(text: str) -> tuple[float, float]:
    m = re.search(r"([\d.]+) (?:±|\\pm) ([\d.]+)", text)
    assert m, text
    return float(m.group(1)), float(m.group(2))


def test_markdown_csv_latex_parse_back_to_the_same_numbers(study_tree, tmp_path, capsys):
    out = tmp_path / "report"
    assert collect(study_tree, "--out", out, "--no-plots", capsys=capsys)[0] == 0
    results = json.loads((out / "results.json").read_text())
    by_label = {(c["panel"], c["variant"]): c for c in results["cells"]}

    # CSV: full precision
    frame = pd.read_csv(out / "summary.csv")
    assert len(frame) == len(ACC)
    for row in frame.itertuples():
        cell = by_label[(row._1, row.variant)]  # first column: dataset.name
        assert row.test_acc_mean == cell["test_acc"]["mean"] and row.test_acc_std == cell["test_acc"]["std"]
        assert row.n_finished == cell["n_finished"] and row.n_expected == cell["n_expected"]
        assert [float(v) for v in row.values.split(";")] == cell["values"]
        if cell["comparison"]:
            assert row.p_welch == cell["comparison"]["p_welch"] and row.p_mwu_holm == cell["comparison"]["p_mwu_holm"]

    # Markdown: the per-dataset tables, rounded as printed
    md = (out / "summary.md").read_text()
    seen = 0
    for dataset in ("mnist", "fashion_mnist"):
        section = md.split(f"## {dataset}\n", 1)[1].split("\n## ", 1)[0]
        lines = [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith("| variant")]
        for line in lines:
            cols = [c.strip() for c in line.strip("|").split(" | ")]
            cell = by_label[(dataset, cols[0])]
            mean, std = parse_pm(cols[2].replace("**", ""))
            assert mean == pytest.approx(100 * cell["test_acc"]["mean"], abs=0.005001)
            assert std == pytest.approx(100 * cell["test_acc"]["std"], abs=0.005001)
            assert cols[1] == f"{cell['n_finished']}/{cell['n_expected']}"
            low, high = map(float, re.findall(r"[\d.]+", cols[3]))
            assert low == pytest.approx(100 * cell["test_acc"]["ci95"][0], abs=0.005001)
            assert high == pytest.approx(100 * cell["test_acc"]["ci95"][1], abs=0.005001)
            if cell["comparison"]:
                p, p_holm = map(float, re.findall(r"[\d.e+-]+", cols[6]))
                assert p == pytest.approx(cell["comparison"]["p_welch"], rel=5e-3)
                assert p_holm == pytest.approx(cell["comparison"]["p_welch_holm"], rel=5e-3)
                assert cols[8].startswith(cell["verdict"])
            assert (cols[2].startswith("**")) == cell["best"]
            seen += 1
    assert seen == len(ACC)

    # LaTeX: booktabs, and the detail table's rows carry the same numbers
    tex = (out / "summary.tex").read_text()
    assert tex.count("\\toprule") == 2 and "\\midrule" in tex and "\\bottomrule" in tex
    assert "fashion\\_mnist" in tex and "fashion_mnist" not in tex.replace("fashion\\_mnist", "")
    rows = [ln for ln in tex.splitlines() if ln.count("&") == 10 and not ln.startswith("Dataset")]
    assert len(rows) == len(ACC)
    for line in rows:
        cols = [c.strip() for c in line.rstrip("\\ ").split("&")]
        cell = by_label[(cols[0].replace("\\_", "_"), cols[1])]
        mean, std = parse_pm(cols[3])
        assert mean == pytest.approx(100 * cell["test_acc"]["mean"], abs=0.005001)
        assert std == pytest.approx(100 * cell["test_acc"]["std"], abs=0.005001)
        assert ("\\mathbf" in cols[3]) == cell["best"]
        assert cols[10].replace("{,}", "") == f"{cell['macs']:.0f}"
    # the overview (paper) table marks significant differences with a dagger
    overview = tex.split("\\label{tab:poolstudy-overview}")[1].split("\\end{tabular}")[0]
    strided_row = next(ln for ln in overview.splitlines() if ln.startswith("strided"))
    assert strided_row.count("$^\\dagger$") == 2


def file_digests(folder: Path, skip: Path | None = None) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and (skip is None or skip not in p.parents)}


def test_plots_written_and_output_identical_on_rerun(study_tree, capsys):
    inputs_before = file_digests(study_tree)
    assert collect(study_tree, capsys=capsys)[0] == 0  # default output: <first PATH>/collected
    out = study_tree / "collected"
    for name in ("accuracy.png", "learning_curves.png", "accuracy_vs_compute.png"):
        image = Image.open(out / name)
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
        colours = np.asarray(image.convert("L"))
        assert colours.std() > 10, f"{name} is blank"  # something is drawn
    assert not (out / "hpo_best_so_far.png").exists()  # no HPO data, no empty figure
    index = (out / "index.md").read_text()
    assert "![" in index and "(accuracy.png)" in index and "## Overview" in index
    first = file_digests(out)
    assert collect(study_tree, capsys=capsys)[0] == 0
    assert file_digests(out) == first
    assert file_digests(study_tree, skip=out) == inputs_before  # inputs untouched
    figures = ("accuracy", "learning_curves", "accuracy_vs_compute", "ranks")  # each as PNG and SVG by default
    assert set(first) == {"summary.md", "index.md", "summary.csv", "jobs.csv", "summary.tex", "results.json",
                          "report.html", *[f"{name}.{ext}" for name in figures for ext in ("png", "svg")]}


def test_figure_formats_on_request_and_stale_ones_removed(study_tree, tmp_path, capsys):
    out = tmp_path / "o"
    assert collect(study_tree, "--out", out, "--formats", "pdf,svg", capsys=capsys)[0] == 0
    written = json.loads((out / "results.json").read_text())["files"]
    assert {"accuracy.png", "accuracy.svg", "accuracy.pdf", "ranks.pdf"} <= set(written)  # PNG always
    assert (out / "accuracy.pdf").read_bytes().startswith(b"%PDF")
    assert "each figure also as SVG and PDF" in (out / "index.md").read_text()
    assert collect(study_tree, "--out", out, "--formats", "png", capsys=capsys)[0] == 0  # the PDF/SVG now stale
    assert not list(out.glob("*.pdf")) and not list(out.glob("*.svg")) and (out / "accuracy.png").is_file()
    code, _, err = collect(study_tree, "--out", out, "--formats", "png,eps", capsys=capsys)
    assert code == 2 and "--formats png,eps: 'eps' is not a figure format" in err and "png, svg, pdf" in err


def test_mixed_commits_and_settings_are_flagged(tmp_path, capsys):
    root = tmp_path / "runs"
    for seed in range(3):
        # maxpool with another learning rate than strided; seeds and data_dir differ by design
        write_job(root / f"m{seed}", "maxpool", seed=seed, test_acc=0.98 + seed / 1000,
                  config={"optimizer.lr": 0.01, "data_dir": f"/data{seed}"})
        write_job(root / f"s{seed}", "strided", seed=seed, test_acc=0.97 + seed / 1000,
                  config={"trainer.epochs": 5 if seed == 2 else 3},
                  commit="b" * 40 if seed == 2 else "a" * 40)
    for seed in range(2):  # another architecture defines its own model.* keys: not a confound
        write_job(root / f"allcnn{seed}", "maxpool", seed=seed, test_acc=0.99,
                  config={"model.arch": "allcnn_c", "model.width": 1.0, "model.dropout": 0.5, "optimizer.lr": 0.01})
    code, stdout, _ = collect(root, "--out", tmp_path / "out", "--no-plots", capsys=capsys)
    assert code == 0
    flags = json.loads((tmp_path / "out" / "results.json").read_text())["flags"]
    assert not any("model.width" in f or "model.dropout" in f for f in flags)
    cells = {c["variant"]: c for c in json.loads((tmp_path / "out" / "results.json").read_text())["cells"]}
    # the baseline is the same architecture's maxpool
    assert cells["lenet strided k5"]["baseline"] == "lenet maxpool k2" and cells["allcnn_c maxpool k2"]["is_baseline"]
    assert any("strided" in f and "trainer.epochs" in f and "3 (2 jobs)" in f and "5 (1 job)" in f for f in flags)
    assert any("optimizer.lr" in f and "variants" in f for f in flags)
    assert any("2 code versions" in f and "aaaaaaaaaa (7 jobs)" in f for f in flags)
    assert not any("seed" in f.split(":")[1] or "data_dir" in f for f in flags)
    assert "## Flags" in stdout
    # a key the user declares irrelevant is not flagged
    collect(root, "--out", tmp_path / "out2", "--no-plots", "--ignore", "optimizer,trainer.epochs", capsys=capsys)
    flags = json.loads((tmp_path / "out2" / "results.json").read_text())["flags"]
    assert not any("optimizer.lr" in f or "trainer.epochs" in f for f in flags)


def test_grouping_keys_aliases_and_baseline(study_tree, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = collect(study_tree, "--out", out, "--no-plots", "--by", "model,dataset", "--baseline", "strided",
                              capsys=capsys)
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["grouping"] == {"row_keys": ["model.downsample.type"], "panel_key": "dataset.name"}
    labels = {c["variant"] for c in results["cells"]}
    assert labels == {"maxpool", "strided", "avgpool"}
    base = {c["panel"]: c for c in results["cells"] if c["is_baseline"]}
    assert {c["variant"] for c in base.values()} == {"strided"}
    maxpool_mnist = next(c for c in results["cells"] if c["panel"] == "mnist" and c["variant"] == "maxpool")
    assert maxpool_mnist["verdict"] == "better"
    assert maxpool_mnist["comparison"]["p_welch"] == pytest.approx(
        stats.ttest_ind(ACC[("mnist", "maxpool")], ACC[("mnist", "strided")], equal_var=False).pvalue, rel=1e-12)
    assert "| strided (baseline) |" in stdout

    # one cell per dataset only when grouping by dataset alone: all operators pooled, and flagged as mixed
    collect(study_tree, "--out", out, "--no-plots", "--by", "dataset", capsys=capsys)
    results = json.loads((out / "results.json").read_text())
    assert len(results["cells"]) == 2
    assert any("model.downsample.type" in f for f in results["flags"])


def test_user_errors_are_one_clear_message(study_tree, tmp_path, capsys):
    code, _, err = collect(study_tree, "--out", tmp_path / "o", "--by", "model.nonsense", capsys=capsys)
    assert code == 2 and "model.nonsense" in err and "dataset.name" in err and "Traceback" not in err
    code, _, err = collect(tmp_path / "nothing_here", "--out", tmp_path / "o", capsys=capsys)
    assert code == 2 and "no job folders" in err and "nothing_here" in err
    code, _, err = collect(study_tree, "--out", tmp_path / "o", "--baseline", "lppool", capsys=capsys)
    assert code == 2 and "lppool" in err and "maxpool" in err
    code, _, err = collect(study_tree, "--out", study_tree / "0", capsys=capsys)
    assert code == 2 and "job folder" in err
    missing_db = tmp_path / "absent.db"
    code, _, err = collect(study_tree, "--out", tmp_path / "o", "--storage", f"sqlite:///{missing_db}", capsys=capsys)
    assert code == 2 and "does not exist" in err and not missing_db.exists()


def test_hpo_sweep_tuned_vs_untuned_and_budget_curves(tmp_path, capsys):
    hpo_root = tmp_path / "hpo"
    made = make_hpo_sweep(hpo_root)
    untuned = tmp_path / "grid"
    for seed in range(3):
        write_job(untuned / f"m{seed}", "maxpool", seed=seed, test_acc=0.9820 + seed / 1000)
        write_job(untuned / f"s{seed}", "strided", seed=seed, test_acc=0.9760 + seed / 1000)
    out = tmp_path / "out"
    code, stdout, stderr = collect(untuned, hpo_root, "--out", out, capsys=capsys)
    assert code == 0, stderr
    results = json.loads((out / "results.json").read_text())
    cells = cells_by(results)
    assert set(cells) == {("mnist", "maxpool"), ("mnist", "strided"), ("mnist", "maxpool tuned"),
                          ("mnist", "strided tuned")}
    assert cells[("mnist", "maxpool tuned")]["values"] == made["finals"]["lenet-maxpool-mnist"]
    assert cells[("mnist", "maxpool tuned")]["n_expected"] == 3  # trials are not seeds of the table
    # tuned strided is compared with tuned maxpool, untuned with untuned
    assert cells[("mnist", "strided tuned")]["baseline"] == cells[("mnist", "maxpool tuned")]["variant"]
    assert cells[("mnist", "strided")]["baseline"] == cells[("mnist", "maxpool")]["variant"] == "maxpool k2"
    gains = {g["variant"]: g for g in results["tuning"]}
    assert gains["strided k5"]["diff"] == pytest.approx(np.mean(made["finals"]["lenet-strided-mnist"]) - 0.977)
    assert results["trial_counts"]["pruned"] == 2 and results["trial_counts"]["failed"] == 1

    studies = {s["name"]: s for s in results["studies"]}
    for name, values in made["trials"].items():
        study = studies[name]
        assert study["panel"] == "mnist" and study["variant"] == cells[("mnist", name.split("-")[1])]["variant"]
        finished = [v for v in values if isinstance(v, float)]
        running, best = [], None
        for v in values:
            best = max(best or v, v) if isinstance(v, float) else best
            running.append(best)
        assert study["best_so_far"]["best"] == pytest.approx(running)
        for n, mean in enumerate(study["expected_max"]["mean"], start=1):
            maxima = [max(draw) for draw in itertools.product(finished, repeat=n)]
            assert mean == pytest.approx(np.mean(maxima), abs=1e-12)
        assert study["counts"] == {"complete": len(finished), "pruned": values.count(None),
                                   "failed": values.count("failed"), "running": 0}
    assert "## Tuned vs untuned" in stdout and "## HPO studies" in stdout
    assert "optimizer.lr=0.005, trainer.batch_size=64" in stdout
    for name in ("hpo_best_so_far.png", "hpo_expected_max.png"):
        assert (out / name).stat().st_size > 5000
    # trials vary the hyper-parameters by design: no consistency flag from them
    assert not any("optimizer.lr" in f for f in results["flags"])


def test_optuna_storage_is_read_directly(tmp_path, capsys):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = tmp_path / "hpo.db"
    storage = f"sqlite:///{db}"
    study = optuna.create_study(study_name="lenet-strided-mnist", storage=storage, direction="maximize")
    study.set_user_attr("poolstudy_settings", {"cell": ["model=strided", "dataset=mnist"],
                                               "sampler": "optuna.samplers.TPESampler", "sampler_seed": 0})
    dist = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}
    values = [0.95, 0.97, None, 0.96]
    for i, value in enumerate(values):
        state = optuna.trial.TrialState.PRUNED if value is None else optuna.trial.TrialState.COMPLETE
        study.add_trial(optuna.trial.create_trial(params={"lr": 0.001 * (i + 1)}, distributions=dist, value=value,
                                                  state=state))
    grid = tmp_path / "grid"
    for seed in range(2):
        write_job(grid / f"s{seed}", "strided", seed=seed, test_acc=0.97 + seed / 100)
    out = tmp_path / "out"
    code, stdout, stderr = collect(grid, "--out", out, "--no-plots", "--storage", storage, "--study",
                                   "lenet-strided-mnist", capsys=capsys)
    assert code == 0, stderr
    (study_record,) = json.loads((out / "results.json").read_text())["studies"]
    assert study_record["variant"] == "lenet strided k5 s2" and study_record["panel"] == "mnist"  # the table's row
    assert study_record["best_params"] == {"lr": pytest.approx(0.002)} and study_record["best_value"] == 0.97
    assert [t["state"] for t in study_record["trials"]] == ["complete", "complete", "pruned", "complete"]
    assert study_record["expected_max"]["mean"] == pytest.approx(expected_max([0.95, 0.97, 0.96])[0])
    code, _, err = collect(grid, "--out", out, "--storage", storage, "--study", "nope", capsys=capsys)
    assert code == 2 and "nope" in err and "lenet-strided-mnist" in err


def test_invariance_metrics_shown_when_present(tmp_path, capsys):
    root = tmp_path / "runs"
    curves = {"maxpool": [[0.99, 0.95, 0.90], [0.98, 0.94, 0.91]], "strided": [[0.99, 0.90, 0.80], [0.98, 0.91, 0.82]]}
    for operator, per_seed in curves.items():
        for seed, curve in enumerate(per_seed):
            write_job(root / f"{operator}{seed}", operator, seed=seed, test_acc=curve[0],
                      metrics_extra={"shift_consistency": 0.9 - 0.1 * (operator == "strided") + seed / 100,
                                     "prediction_distance_1px": 0.01 * (seed + 1),
                                     "acc_vs_shift": {str(s): a for s, a in enumerate(curve)}})
    write_job(root / "avgpool0", "avgpool", test_acc=0.985)  # a run without probes
    out = tmp_path / "out"
    code, stdout, _ = collect(root, "--out", out, capsys=capsys)
    assert code == 0
    cells = cells_by(json.loads((out / "results.json").read_text()))
    strided = cells[("mnist", "strided")]
    assert strided["shift_consistency"]["mean"] == pytest.approx(0.805)
    assert strided["prediction_distance_1px"]["std"] == pytest.approx(np.std([0.01, 0.02], ddof=1))
    for shift in range(3):
        assert strided["acc_vs_shift"][str(shift)]["mean"] == pytest.approx(np.mean([c[shift] for c in curves["strided"]]))
    assert cells[("mnist", "avgpool")]["acc_vs_shift"] is None
    assert "shift consistency %" in stdout and "| 80.50 ± 0.71 |" in stdout and "0.0150 ± 0.0071" in stdout and "### Accuracy vs shift on mnist" in stdout
    assert "| shift 2 px |" in stdout.replace("shift 0 px | shift 1 px ", "")
    assert (out / "accuracy_vs_shift.png").stat().st_size > 5000


def test_console_entry_points_run(study_tree, tmp_path):
    """`python -m poolstudy.collect` and the root alias `collect.py` as users run them."""
    proc = subprocess.run([sys.executable, "-m", "poolstudy.collect", str(study_tree), "--out", str(tmp_path / "a"),
                           "--no-plots"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# Results: test accuracy") and "wrote 7 files" in proc.stderr
    proc = subprocess.run([sys.executable, str(ROOT / "collect.py"), str(study_tree), "--by", "bogus"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    problems = [line for line in proc.stderr.splitlines() if not line.startswith("warning: ")]
    assert proc.returncode == 2 and len(problems) == 1, proc.stderr
    assert problems[0].startswith("error: --by: no job has the key 'bogus'")


@pytest.mark.realdata
@pytest.mark.slow
def test_real_small_multirun_end_to_end(run_train, tmp_path, capsys):
    require_real("MNIST")
    sweep = tmp_path / "sweep"
    proc = run_train("-m", "model=maxpool,strided", "seed=0,1", "trainer.epochs=1", "dataset.train_subset=1000",
                     "dataset.test_subset=300", "trainer.progress=false", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "report"
    code, stdout, stderr = collect(sweep, "--out", out, capsys=capsys)
    assert code == 0, stderr
    results = json.loads((out / "results.json").read_text())
    metrics = {}
    for job in sweep.iterdir():
        if (job / "metrics.json").is_file():
            m = json.loads((job / "metrics.json").read_text())
            metrics.setdefault(m["model"]["downsample"]["type"], []).append((m["seed"], m["test_acc"]))
    cells = cells_by(results)
    assert set(cells) == {("mnist", "maxpool"), ("mnist", "strided")}
    for operator, pairs in metrics.items():
        accs = [acc for _, acc in sorted(pairs)]
        cell = cells[("mnist", operator)]
        assert cell["n_finished"] == cell["n_expected"] == 2 and cell["values"] == accs
        assert cell["test_acc"]["mean"] == pytest.approx(np.mean(accs))
    c = cells[("mnist", "strided")]["comparison"]
    a, b = [acc for _, acc in sorted(metrics["strided"])], [acc for _, acc in sorted(metrics["maxpool"])]
    expected_p = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert (c["p_welch"] is None and np.isnan(expected_p)) or c["p_welch"] == pytest.approx(expected_p)
    assert cells[("mnist", "maxpool")]["macs"] == 1_021_200 and cells[("mnist", "strided")]["macs"] == 580_200
    for name in ("accuracy.png", "learning_curves.png", "accuracy_vs_compute.png", "index.md"):
        assert (out / name).stat().st_size > 1000
    assert not results["warnings"]
    probed = [m for m in (json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")) if "shift_consistency" in m]
    if probed:  # the invariance probes ran (their default): shown per cell
        strided = [m["shift_consistency"] for m in probed if m["model"]["downsample"]["type"] == "strided"]
        assert cells[("mnist", "strided")]["shift_consistency"]["mean"] == pytest.approx(np.mean(strided))
        assert (out / "accuracy_vs_shift.png").is_file() and "shift consistency %" in stdout


def test_collector_cells_name_the_architecture_depth_and_torchvision_model(tmp_path, capsys):
    """arch=resnet/torchvision jobs: the network (model.name, model.depth) is a variant key after model.arch
    wherever a job has one; LeNet alone keeps its labels."""
    published = {"type": "published", "kernel_size": None, "stride": None, "padding": None}
    jobs = [("maxpool", {}), ("maxpool", {"model.arch": "resnet", "model.depth": 20}),
            ("maxpool", {"model.arch": "resnet", "model.depth": 56}),
            ("maxpool", {"model.arch": "torchvision", "model.name": "resnet18"}),
            ("maxpool", {"model.arch": "torchvision", "model.name": "resnet18", "model.downsample": published})]
    number = 0
    for operator, config in jobs:
        for seed in range(2):
            write_job(tmp_path / "sweep" / str(number), operator, "cifar10", seed, 0.5 + 0.01 * number, config=config)
            number += 1
    code, _, _ = collect(tmp_path / "sweep", "--out", tmp_path / "out", "--no-plots", capsys=capsys)
    assert code == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["grouping"]["row_keys"][:3] == ["model.arch", "model.name", "model.depth"]
    assert sorted(c["variant"] for c in results["cells"]) == [
        "lenet maxpool k2 s2", "resnet depth=20 maxpool k2 s2", "resnet depth=56 maxpool k2 s2",
        "torchvision resnet18 maxpool k2 s2", "torchvision resnet18 published"]
    assert [c["n_finished"] for c in results["cells"]] == [2] * 5  # each network's two seeds, none mixed in

    # LeNet runs alone: no key for the network, the labels as before
    code, _, _ = collect(tmp_path / "sweep" / "0", tmp_path / "sweep" / "1", "--out", tmp_path / "lenet", "--no-plots",
                         capsys=capsys)
    assert code == 0
    results = json.loads((tmp_path / "lenet" / "results.json").read_text())
    assert "model.name" not in results["grouping"]["row_keys"] and "model.depth" not in results["grouping"]["row_keys"]
