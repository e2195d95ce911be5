"""Tables of measured figures for the documentation, generated from committed records.

Every timing, speed-up or ratio the README and ``docs/*.md`` show sits in a generated block::

    <!-- poolstudy.figures bench-loop bench/bench.json -->
    ... (written by python -m poolstudy.publish from the JSON) ...
    <!-- /poolstudy.figures -->

The first word names the table, the rest are its sources, relative to the page's folder:

``bench-loop FILE``
    ``python -m benchmarks.bench --json FILE``: images/s of the peer, project and limit loops and the
    per-repetition ratios (median, min–max).
``bench-options FILE``
    ``python -m benchmarks.bench --options --json FILE``: images/s of each CPU speed option and its
    speed-up over the plain set-up.
``bench-sweeps FILE``
    ``python -m benchmarks.bench --sweeps --json FILE``: whole multiruns and single jobs (wall time,
    jobs per hour, overheads, where the time went, page faults, peak RSS).
``studies FOLDER ...``
    the ``study.json`` of each archived study (``sweeps/make_results.py``): command, job folders,
    wall time, date, machine.
``job-time FOLDER``
    the finished jobs' ``metrics.json`` under FOLDER grouped by operator and dataset: median job time,
    training time and the invariance probes' share (seconds, from ``job_time_s``, ``train_time_s`` and
    ``invariance.time_s``).
``test-times FILE``
    ``python -m tools.junit_times``: the wall time of each test of one module from a pytest JUnit
    report (seconds), slowest first, and their sum.

A block's text is a pure function of its sources, so ``python -m poolstudy.publish PAGE --check``
fails when a page's table was edited by hand or its sources changed after it was written.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from poolstudy.errors import PoolStudyError
from poolstudy.jobfolder import METRICS_FILE, STUDY_RECORD, finished_metrics


def _load(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise PoolStudyError(f"{path}: no such file; a figures block names the JSON its table comes from.")
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PoolStudyError(f"{path} is not readable JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise PoolStudyError(f"{path}: expected a JSON object, found {type(data).__name__}.")
    return data


def _need(data: dict[str, Any], key: str, path: str, what: str) -> Any:
    if key not in data:
        raise PoolStudyError(f"{path} has no '{key}' entry; is it the JSON of {what}?")
    return data[key]


def _machine(machine: dict[str, Any]) -> str:
    device = machine.get("device_name") or machine.get("device", "?")
    return (f"{machine.get('date', '?')}, {machine.get('cpu_count', '?')}-core {device}, "
            f"{machine.get('torch_threads', '?')} torch threads, torch {machine.get('torch', '?')}")


def _range(ratio: dict[str, float], digits: int = 2) -> str:
    return f"{ratio['median']:.{digits}f} ({ratio['min']:.{digits}f}–{ratio['max']:.{digits}f})"


def _spread(figures: dict[str, float]) -> str:
    """Median ± half the min–max range, in percent of the median."""
    half = (figures["max"] - figures["min"]) / 2 / figures["median"] * 100
    return f"{figures['median']:.0f} ±{half:.0f} %"


def _median(rates: dict[str, Any], key: str) -> str:
    """A peer's median images/s, or '—' where the run did not measure it (``--workers 0``)."""
    return f"{rates[key]['median']:.0f}" if key in rates else "—"


def _model(case: dict[str, Any]) -> str:
    arch = case.get("arch", "lenet")
    return case["model"] if arch == "lenet" else f"{arch} {case['model']}"


CLOCKS = {"cpu": "Images/s of this process's CPU time (`--clock cpu`, one thread)", "wall": "Images/s"}


def bench_loop(paths: list[str]) -> str:
    (path,) = _one(paths, "bench-loop")
    data = _load(path)
    cases = _need(data, "cases", path, "python -m benchmarks.bench --json")
    clock = CLOCKS.get(data.get("clock", "wall"), "Images/s")
    lines = [f"Measured {_machine(data.get('machine', {}))}. {clock}: medians (± half the range over the "
             "repetitions for the project and the limit); ratios: medians of the per-repetition ratios, min–max in "
             "brackets.", "",
             "| data | model | batch | reps × steps | peer w0 | peer w2 | peer w0, project settings | project | limit "
             "| project / peer | project / peer (same settings) | project / limit | data path share |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for case in cases:
        rates, ratios = case["images_per_s"], case["ratios"]
        share = ratios["data_path_share"]
        lines.append(
            f"| {case['data']} | {_model(case)} | {case['batch_size']} | {case['reps']} × {case['steps']} "
            f"| {_median(rates, 'peer_w0')} | {_median(rates, 'peer_w2')} "
            f"| {rates['peer_w0_same_settings']['median']:.0f} | {_spread(rates['project'])} "
            f"| {_spread(rates['limit'])} | **{_range(ratios['vs_peer'])}** "
            f"| {_range(ratios['vs_peer_same_settings'])} | {_range(ratios['vs_limit'])} "
            f"| {share['median'] * 100:.1f} % ({share['min'] * 100:.1f}–{share['max'] * 100:.1f} %) |")
    rss = data.get("peak_memory", {}).get("rss_mb")
    if rss is not None:
        lines += ["", f"Peak RSS of the benchmark process: {rss:.0f} MB."]
    return "\n".join(lines)


def bench_options(paths: list[str]) -> str:
    (path,) = _one(paths, "bench-options")
    data = _load(path)
    rows = _need(data, "options", path, "python -m benchmarks.bench --options --json")
    names = list(rows[0]["options"]) if rows else []
    lines = [f"Measured {_machine(data.get('machine', {}))}; "
             + (f"{rows[0]['reps']} interleaved repetitions of {rows[0]['steps']} steps, batch "
                f"{rows[0]['batch_size']}. " if rows else "")
             + "Images/s (median) and, in brackets, the speed-up over `base` (median of the per-repetition "
             "ratios); for `compile` also its first epoch in seconds.", "",
             "| data | model | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for row in rows:
        cells = []
        for name in names:
            option = row["options"][name]
            first = f"; first epoch {option['first_epoch_s']:.1f} s" if name == "compile" else ""
            cells.append(f"{option['median']:.0f} ({option['speedup_vs_base']:.2f}×{first})")
        lines.append(f"| {row['data']} | {_model(row)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


SWEEP_ROWS = (("sequential", "basic (sequential)"),
              ("sequential_training_only", "basic, training only (`trainer.bn_recalibration=false "
                                           "invariance.enabled=false`)"),
              ("parallel_2x1", "`local_parallel` (2 jobs)"))
SINGLE_ROWS = (("single_mnist", "MNIST"), ("single_mnist_system_allocator", "MNIST"),
               ("single_cifar10", "CIFAR-10"), ("single_cifar10_system_allocator", "CIFAR-10"))
PHASES = ("setup", "data", "model", "training", "test", "bn_recalibration", "probes")


def bench_sweeps(paths: list[str]) -> str:
    (path,) = _one(paths, "bench-sweeps")
    data = _load(path)
    sweeps = _need(data, "sweeps", path, "python -m benchmarks.bench --sweeps --json")
    present = [(key, label) for key, label in SWEEP_ROWS if key in sweeps]
    jobs = {sweeps[key]["jobs"] for key, _ in present}
    lines = [f"Measured {_machine(data.get('machine', {}))}: multiruns of "
             f"{' / '.join(map(str, sorted(jobs))) or '?'} one-epoch jobs and single one-epoch jobs.", "",
             "| multirun | threads/job | wall (s) | jobs/hour | wall / Σ job_time_s | wall / Σ train_time_s "
             "| probes / job time | peak RSS (MB) |", "|---|---|---|---|---|---|---|---|"]
    for key, label in present:
        s = sweeps[key]
        probes = f"{s['probe_share_of_job_time'] * 100:.1f} %" if s["probe_share_of_job_time"] else "–"
        lines.append(f"| {label} | {s['torch_threads']} | {s['wall_s']:.1f} | {s['jobs_per_hour']:.0f} "
                     f"| {s['wall_over_job_time']:.3f} | {s['wall_over_train_time']:.3f} | {probes} "
                     f"| {s['peak_rss_mb']:.0f} |")
    timed = [(key, label) for key, label in present if sweeps[key].get("outside_jobs_s") is not None]
    if timed:
        lines += ["", "Where the wall time of the sequential multiruns went, seconds (the jobs' `time_breakdown_s` "
                  "summed; outside jobs: the wall time less the jobs' own time):", "",
                  "| multirun | wall | outside jobs | " + " | ".join(PHASES) + " |",
                  "|---|---|---|" + "---|" * len(PHASES)]
        for key, label in timed:
            s = sweeps[key]
            lines.append(f"| {label.split(' (`')[0]} | {s['wall_s']:.1f} | {s['outside_jobs_s']:.1f} | "
                         + " | ".join(f"{s['sum_phase_s'].get(p, 0.0):.1f}" for p in PHASES) + " |")
    singles = [(key, label) for key, label in SINGLE_ROWS if key in sweeps]
    if singles:
        lines += ["", "| single job, 1 epoch | `keep_freed_memory` | wall (s) | training epoch (s) | page faults "
                  "(millions) | peak RSS (MB) |", "|---|---|---|---|---|---|"]
        for key, label in singles:
            s = sweeps[key]
            lines.append(f"| {label} | {str(s['keep_freed_memory']).lower()} | {s['wall_s']:.1f} "
                         f"| {s['epoch_time_s']:.1f} | {s['page_faults'] / 1e6:.2f} | {s['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def studies(paths: list[str]) -> str:
    if not paths:
        raise PoolStudyError("a 'studies' figures block needs the study folders (or their parent) to read.")
    records = []
    for folder in map(Path, paths):
        files = [folder / STUDY_RECORD] if (folder / STUDY_RECORD).is_file() else sorted(folder.glob(f"*/{STUDY_RECORD}"))
        if not files:
            raise PoolStudyError(f"{folder}: no {STUDY_RECORD} in it or its sub-folders (sweeps/make_results.py "
                                 "writes one per study).")
        records += [(f, _load(str(f))) for f in files]
    lines = ["| study | job folders | wall time | ran | machine | command |", "|---|---|---|---|---|---|"]
    for file, study in records:
        commands = "; ".join(f"`{c}`" for c in study["commands"])
        lines.append(f"| {study['study']} | {study['jobs']} | {study['wall_s'] / 60:.1f} min | {study['date']} "
                     f"| {study['machine']} | {commands} |")
    return "\n".join(lines)


def job_time(paths: list[str]) -> str:
    (path,) = _one(paths, "job-time")
    folder = Path(path)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for metrics_file in sorted(folder.rglob(METRICS_FILE)):
        metrics = finished_metrics(metrics_file.parent)
        if metrics is None or (metrics.get("hpo") or {}).get("role"):
            continue
        key = (metrics["dataset"]["name"], metrics["model"]["downsample"]["type"])
        groups.setdefault(key, []).append(metrics)
    if not groups:
        raise PoolStudyError(f"{folder}: no finished job (metrics.json) outside HPO studies under it.")
    study = folder / STUDY_RECORD
    lead = ""
    if study.is_file():
        record = _load(str(study))
        lead = (f"From the {sum(map(len, groups.values()))} finished jobs of `{record['commands'][0]}` "
                f"(ran {record['date']} on {record['machine']}). ")
    lines = [lead + "Medians over each cell's jobs, seconds.", "",
             "| dataset | operator | jobs | epochs | torch threads | job time | training | probes' share of the job |",
             "|---|---|---|---|---|---|---|---|"]
    for (dataset, operator), jobs in sorted(groups.items()):
        median = lambda values: statistics.median(values)  # noqa: E731
        epochs = sorted({j["epochs"] for j in jobs})
        threads = sorted({j["environment"].get("torch_threads") for j in jobs}, key=str)
        share = [j["invariance"]["time_s"] / j["job_time_s"] for j in jobs if j.get("invariance", {}).get("time_s")]
        lines.append(f"| {dataset} | {operator} | {len(jobs)} | {', '.join(map(str, epochs))} "
                     f"| {', '.join(map(str, threads))} | {median([j['job_time_s'] for j in jobs]):.0f} "
                     f"| {median([j['train_time_s'] for j in jobs]):.0f} "
                     f"| {(f'{median(share) * 100:.1f} %' if share else '–')} |")
    return "\n".join(lines)


def test_times(paths: list[str]) -> str:
    """The wall time of each test of one module (``python -m tools.junit_times``), slowest first, and their sum."""
    (path,) = _one(paths, "test-times")
    data = _load(path)
    cases = _need(data, "cases", path, "python -m tools.junit_times")
    note = f" {data['note'][0].upper()}{data['note'][1:]}." if data.get("note") else ""
    lines = [f"`{data.get('module', '?')}`, ran {data.get('date', '?')} on {data.get('machine', '?')}.{note}", "",
             "| test | seconds | outcome |", "|---|---|---|"]
    for case in sorted(cases, key=lambda c: -c["seconds"]):
        lines.append(f"| `{case['test']}` | {case['seconds']:.1f} | {case['outcome']} |")
    lines.append(f"| all {len(cases)} | {sum(c['seconds'] for c in cases):.1f} | |")
    return "\n".join(lines)


def _one(paths: list[str], name: str) -> list[str]:
    if len(paths) != 1:
        raise PoolStudyError(f"a '{name}' figures block takes one source file, got {len(paths)}: {' '.join(paths)}.")
    return paths


RENDERERS: dict[str, Callable[[list[str]], str]] = {
    "bench-loop": bench_loop, "bench-options": bench_options, "bench-sweeps": bench_sweeps,
    "studies": studies, "job-time": job_time, "test-times": test_times}


def render(words: list[str]) -> str:
    """The Markdown table a figures block's words (``NAME SOURCE ...``) give.

    Raises:
        PoolStudyError: an unknown table name, a missing or unreadable source, a source of another kind.
    """
    if not words or words[0] not in RENDERERS:
        raise PoolStudyError(f"figures block '{' '.join(words)}': the first word must name a table: "
                             f"{', '.join(RENDERERS)}.")
    try:
        return RENDERERS[words[0]](words[1:])
    except (KeyError, TypeError, ZeroDivisionError) as exc:
        raise PoolStudyError(f"figures block '{' '.join(words)}': a source lacks {exc}; is it the kind of record "
                             f"this table reads (python -m pydoc poolstudy.results.doc_figures)?") from None
