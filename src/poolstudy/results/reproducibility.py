"""Compare a re-run's metrics.json with its record: identical, within seed noise, or beyond it.

Figures are every entry of the record's metrics.json except timings (``*_time_s``, ``time_s``,
``images_per_s``, ``time_breakdown_s``), ``environment`` (the conditions, compared separately)
and ``dataset.source`` (where the files were read). Three kinds:

* fixed figures (parameter and MAC counts, split sizes, learning rates, configuration echoes)
  do not depend on the floating-point path and must be equal;
* float-dependent figures (losses, accuracies, invariance probes, a computed dataset mean/std)
  change with the order of floating-point operations: CPU instruction set, threads, libraries;
* the judged figures, the final ones among them (``JUDGED``), are held against seed noise.

Seed noise of a figure (σ) is the sample standard deviation of that figure over the record and
its sibling seeds (same configuration but ``seed``, one job per seed) when there are at least
three seeds; for accuracies it is at least the binomial standard error ``sqrt(p(1-p)/n)`` of the
n images they count (``p`` smoothed to ``(k+1)/(n+2)``). A re-run is within noise when every
judged figure moves by at most ``3·√2·σ``: three standard deviations of the difference of two
independent runs. A figure with neither estimate (a loss without siblings) is not judged.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from poolstudy.jobfolder import RESUME_IGNORES, under
from poolstudy.results.records import MISSING, as_number, lookup

IDENTICAL = "identical"
WITHIN_NOISE = "differs within seed noise"
BEYOND_NOISE = "differs beyond noise"
TOLERANCE_SDS = 3 * math.sqrt(2)  # 3 sd of a difference of two independent runs
MIN_SEEDS = 3  # for a sample standard deviation

TIMING_KEYS = frozenset({"train_time_s", "job_time_s", "images_per_s", "time_breakdown_s", "epoch_time_s", "time_s"})
NOT_FIGURES = ("environment", "dataset.source")
FLOAT_LEAVES = frozenset({"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "val_loss_raw",
                          "val_acc_raw", "test_loss_raw", "test_acc_raw", "shift_consistency",
                          "prediction_distance_1px"})
FLOAT_SUBTREES = ("acc_vs_shift", "layer_shift_change", "dataset.mean", "dataset.std")
# Judged final figures -> the metrics.json count of images behind an accuracy (None: not an accuracy).
JUDGED = {"test_acc": "dataset.test", "val_acc": "dataset.val", "test_acc_raw": "dataset.test",
          "val_acc_raw": "dataset.val", "test_loss": None, "val_loss": None, "test_loss_raw": None,
          "val_loss_raw": None, "shift_consistency": "invariance.test_images", "prediction_distance_1px": None}
JUDGED_SUBTREES = {"acc_vs_shift": "invariance.test_images"}
# Config keys that change no figure, or whose effect is compared as a condition (threads, device).
CONFIG_IGNORES = RESUME_IGNORES

# CUDA's max-pool backward, for one, has no deterministic kernel: these re-runs are close, not exact.
NOT_BIT_EXACT_DEVICES = ("cuda", "mps")

UNSET = "(unset)"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaves; list items by index (``history.0.train_loss``)."""
    if isinstance(tree, Mapping) and tree:
        items = tree.items()
    elif isinstance(tree, (list, tuple)) and tree:
        items = enumerate(tree)
    else:
        return {prefix[:-1]: tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}{key}."))
    return flat


def result_figures(metrics: Mapping[str, Any], exclude: Sequence[str] = ()) -> dict[str, Any]:
    """Every figure of a metrics.json, flattened, timings and conditions aside."""
    return {path: value for path, value in flatten(metrics).items()
            if not under(path, (*NOT_FIGURES, *exclude)) and not (set(path.split(".")) & TIMING_KEYS)}


def is_float_dependent(path: str) -> bool:
    return path.rsplit(".", 1)[-1] in FLOAT_LEAVES or under(path, FLOAT_SUBTREES)


def _judged_count_key(path: str) -> tuple[bool, str | None]:
    if path in JUDGED:
        return True, JUDGED[path]
    for subtree, count_key in JUDGED_SUBTREES.items():
        if path.startswith(subtree + "."):
            return True, count_key
    return False, None


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, bool) != isinstance(b, bool):  # True == 1 in Python, not in a record
        return False
    return a == b


def seed_noise(path: str, recorded: Mapping[str, Any], siblings: Sequence[Mapping[str, Any]]) -> tuple[float | None, str]:
    """σ of a judged figure and where it comes from (see the module docstring); (None, reason) when unknown."""
    values = [v for v in (as_number(lookup(m, path)) for m in (recorded, *siblings)) if v is not None]
    sd = statistics.stdev(values) if len(values) >= MIN_SEEDS else None
    sources, sigma = [], None
    if sd:
        sigma, sources = sd, [f"{len(values)} seeds"]
    _, count_key = _judged_count_key(path)
    p = as_number(lookup(recorded, path))
    n = as_number(lookup(recorded, count_key)) if count_key else None
    if count_key and p is not None and n and 0 <= p <= 1:
        p_smoothed = (p * n + 1) / (n + 2)
        binomial = math.sqrt(p_smoothed * (1 - p_smoothed) / n)
        if sigma is None or binomial > sigma:
            sigma, sources = binomial, [f"binomial, n={int(n)}"]
    if sigma is None:
        return None, "no sibling seeds" if sd is None else "sibling seeds all equal"
    return sigma, sources[0]


@dataclass
class FigureCheck:
    path: str
    recorded: Any
    rerun: Any
    sigma: float | None = None
    sigma_source: str = ""

    @property
    def delta(self) -> float | None:
        a, b = as_number(self.recorded), as_number(self.rerun)
        return None if a is None or b is None else abs(b - a)

    @property
    def tolerance(self) -> float | None:
        return None if self.sigma is None else TOLERANCE_SDS * self.sigma

    @property
    def within(self) -> bool | None:
        """True/False against the tolerance; None when not judged."""
        if _equal(self.recorded, self.rerun):
            return True
        if self.tolerance is None or self.delta is None:
            return None
        return self.delta <= self.tolerance


@dataclass
class Condition:
    label: str
    recorded: Any
    rerun: Any

    def __str__(self) -> str:
        return f"{self.label} {show(self.recorded)} vs {show(self.rerun)}"


@dataclass
class Comparison:
    verdict: str
    because: str | None  # for WITHIN_NOISE
    judged: list[FigureCheck]
    fixed_differences: list[FigureCheck]  # fixed figures that differ, or recorded figures the re-run lacks
    float_differences: int  # float-dependent figures that differ (all of them, judged or not)
    first_difference: FigureCheck | None
    conditions: list[Condition]  # recorded conditions that differ
    unrecorded: list[str]  # conditions the record lacks, so they cannot be compared
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy (a figure or condition one side lacks is null)."""
        plain = _plain
        return {
            "verdict": self.verdict, "because": self.because,
            "conditions_differing": [{"condition": c.label, "record": plain(c.recorded), "rerun": plain(c.rerun)}
                                     for c in self.conditions],
            "conditions_not_recorded": self.unrecorded,
            "judged": [{"figure": f.path, "record": f.recorded, "rerun": plain(f.rerun), "abs_diff": f.delta,
                        "sigma": f.sigma, "sigma_from": f.sigma_source, "tolerance": f.tolerance, "within": f.within}
                       for f in self.judged],
            "fixed_differences": [{"figure": f.path, "record": f.recorded, "rerun": plain(f.rerun)}
                                  for f in self.fixed_differences],
            "float_dependent_differences": self.float_differences,
            "first_difference": None if self.first_difference is None else {
                "figure": self.first_difference.path, "record": self.first_difference.recorded,
                "rerun": plain(self.first_difference.rerun)},
            "notes": self.notes,
        }


EXIT_CODES = {IDENTICAL: 0, WITHIN_NOISE: 3, BEYOND_NOISE: 4}


def _plain(value: Any) -> Any:
    return None if value is MISSING else value


def show(value: Any) -> str:
    if value is MISSING:
        return "(missing)"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={show(v)}" for k, v in value.items()) + "}" if value else "(none)"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


# -- conditions --------------------------------------------------------------------------------

def _env(path: str):
    return lambda env: lookup(env, path)


def _code(env: Mapping[str, Any]) -> Any:
    commit = env.get("git_commit", MISSING)
    if commit is MISSING or commit is None:
        return commit
    return commit[:7] + (" + uncommitted changes" if env.get("git_dirty") else "")


# (label, getter) in the order a reader checks them; getters return MISSING for an absent field.
CPU_CONDITIONS = (
    ("torch CPU capability", _env("cpu_capability")),
    ("CPU", lambda env: _cpu_name(env)),
    ("CPU vector extensions", _env("cpu.isa_flags")),
    ("threads", _env("torch_threads")),
)
LIBRARY_CONDITIONS = (
    ("device", _env("device")),
    ("torch build", _env("torch_build")),
    ("oneDNN", _env("libraries.onednn")),
    ("MKL", _env("libraries.mkl")),
    ("BLAS", _env("libraries.blas")),
    ("parallel backend", _env("libraries.parallel_backend")),
    ("deterministic", _env("deterministic")),
    ("float32 matmul precision", _env("float32_matmul_precision")),
    ("python", _env("python")),
)
CUDA_CONDITIONS = (
    ("GPU", _env("cuda.gpu")),
    ("CUDA", _env("cuda.cuda")),
    ("cuDNN", _env("cuda.cudnn")),
    ("TF32 matmul", _env("cuda.tf32_matmul")),
    ("TF32 cuDNN", _env("cuda.tf32_cudnn")),
    ("cuDNN benchmark", _env("cuda.cudnn_benchmark")),
)


def _cpu_name(env: Mapping[str, Any]) -> Any:
    cpu = env.get("cpu", MISSING)
    if not isinstance(cpu, Mapping):
        return cpu
    return " / ".join(str(x) for x in (cpu.get("model"), cpu.get("id")) if x) or None


def compare_conditions(recorded_env: Mapping[str, Any], rerun_env: Mapping[str, Any],
                       code_from_record: bool = False) -> tuple[list[Condition], list[str]]:
    """Recorded conditions that differ, and the labels of those the record lacks."""
    differing, unrecorded = [], []
    cuda = any(str(env.get("device", "")).startswith("cuda") for env in (recorded_env, rerun_env))
    checks = [*CPU_CONDITIONS, *LIBRARY_CONDITIONS, *(CUDA_CONDITIONS if cuda else ())]
    packages = sorted(set(recorded_env.get("packages") or {}) | set(rerun_env.get("packages") or {}))
    checks += [(pkg, _env(f"packages.{pkg}")) for pkg in packages if pkg != "poolstudy"]
    if not code_from_record:
        checks.append(("code", _code))
    for label, get in checks:
        before, after = get(recorded_env), get(rerun_env)
        if before is MISSING:
            unrecorded.append(label)
        elif before != after:
            differing.append(Condition(label, before, after))
    # one condition per variable that steers the floating-point path (only set ones are recorded)
    before, after = recorded_env.get("float_env", MISSING), rerun_env.get("float_env")
    if not isinstance(before, Mapping):
        unrecorded.append("float-path environment variables")
    else:
        after = after if isinstance(after, Mapping) else {}
        differing += [Condition(name, before.get(name, UNSET), after.get(name, UNSET))
                      for name in sorted(before.keys() | after.keys()) if before.get(name) != after.get(name)]
    return differing, unrecorded


def compare_configs(recorded: Mapping[str, Any], rerun: Mapping[str, Any],
                    ignore: Sequence[str] = ()) -> list[Condition]:
    """Config entries (unresolved snapshots) that differ, keys of CONFIG_IGNORES and ``ignore`` aside."""
    a, b = flatten(recorded), flatten(rerun)
    skip = (*CONFIG_IGNORES, *ignore)
    return [Condition(f"config {key}", a.get(key, MISSING), b.get(key, MISSING))
            for key in sorted(a.keys() | b.keys()) if not under(key, skip) and a.get(key, MISSING) != b.get(key, MISSING)]


# -- the verdict -------------------------------------------------------------------------------

def compare_runs(recorded: Mapping[str, Any], rerun: Mapping[str, Any],
                 siblings: Sequence[Mapping[str, Any]] = (), *,
                 config_differences: Sequence[Condition] = (), exclude: Sequence[str] = (),
                 code_from_record: bool = False) -> Comparison:
    """The verdict on ``rerun`` (a metrics.json) against ``recorded``.

    ``siblings``: metrics of the record's sibling seeds (one per seed, the record's own excluded).
    ``config_differences``: from compare_configs, listed with the conditions. ``exclude``: figure
    paths not to compare (e.g. ``hpo`` when the re-run detached from its HPO study).
    ``code_from_record``: the re-run ran the record's own commit, so code is not a condition.
    """
    before, after = result_figures(recorded, exclude), result_figures(rerun, exclude)
    judged, fixed, float_diffs, first = [], [], 0, None
    # history first, so that the first difference is the earliest in training
    for path, value in sorted(before.items(), key=lambda item: not item[0].startswith("history.")):
        new = after.get(path, MISSING)
        is_judged, _ = _judged_count_key(path)
        check = FigureCheck(path, value, new)
        if is_judged:
            check.sigma, check.sigma_source = seed_noise(path, recorded, siblings)
            judged.append(check)
        if _equal(value, new):
            continue
        first = first or check
        if new is not MISSING and is_float_dependent(path):
            float_diffs += 1
        else:
            fixed.append(check)

    recorded_env, rerun_env = recorded.get("environment") or {}, rerun.get("environment") or {}
    conditions, unrecorded = compare_conditions(recorded_env, rerun_env, code_from_record)
    conditions += list(config_differences)
    notes = []
    source = lookup(recorded, "dataset.source"), lookup(rerun, "dataset.source")
    if source[0] is not MISSING and source[0] != source[1]:  # a path, often a link to the same files
        notes.append(f"data read from {show(source[1])} (record: {show(source[0])})")
    if not recorded_env:
        notes.append("the record has no environment entry")

    if first is None:
        verdict, because = IDENTICAL, None
    elif fixed or any(c.within is False for c in judged) or not any(c.within is not None for c in judged):
        verdict, because = BEYOND_NOISE, None
        if not any(c.within is not None for c in judged):
            notes.append("no figure has a noise estimate, so no difference can be called seed noise")
    else:
        verdict = WITHIN_NOISE
        lacks = f"the record lacks: {', '.join(unrecorded)}"
        if not conditions and str(rerun_env.get("device", "")).startswith(NOT_BIT_EXACT_DEVICES):
            because = f"of non-deterministic {rerun_env['device']} kernels (never guaranteed bit-identical)"
        elif not conditions:
            because = "of an unrecorded condition" + (f" ({lacks})" if unrecorded else "")
        else:  # a differing condition need not be the cause when others could not be compared
            because = "; ".join(map(str, conditions)) + (f" (or a condition not recorded: {lacks})" if unrecorded else "")
    if verdict != IDENTICAL and any(c.label == "code" for c in conditions):
        notes.append("the code differs from the record's commit: python -m poolstudy.reproduce <job_dir> --code record "
                     "re-runs that commit, to tell a code change from the other conditions")
    return Comparison(verdict, because, judged, fixed, float_diffs, first, conditions, unrecorded, notes)


def format_comparison(cmp: Comparison) -> str:
    """The human-readable report: verdict line, judged figures, conditions."""
    lines = []
    if cmp.verdict == WITHIN_NOISE:
        lines.append(f"verdict: {WITHIN_NOISE}, because {cmp.because}")
    elif cmp.verdict == IDENTICAL:
        lines.append(f"verdict: {IDENTICAL} (every recorded figure equal, timings aside)")
    else:
        lines.append(f"verdict: {BEYOND_NOISE}")
    if cmp.verdict != IDENTICAL:
        lines.append(f"  {'figure':<24} {'record':>12} {'re-run':>12} {'|diff|':>10} {'tolerance':>10}  sigma from")
        for f in cmp.judged:
            mark = {True: "", False: "  <- beyond noise", None: "  (not judged)"}[f.within]
            lines.append(f"  {f.path:<24} {show(f.recorded):>12} {show(f.rerun):>12} "
                         f"{show(f.delta) if f.delta is not None else '-':>10} "
                         f"{show(f.tolerance) if f.tolerance is not None else '-':>10}  {f.sigma_source}{mark}")
        for f in cmp.fixed_differences:
            what = "missing from the re-run" if f.rerun is MISSING else f"{show(f.recorded)} vs {show(f.rerun)}"
            lines.append(f"  fixed figure {f.path}: {what} (independent of floating-point order; must be equal)")
        if cmp.first_difference is not None:
            f = cmp.first_difference
            lines.append(f"  first difference: {f.path} {f.recorded!r} vs {f.rerun!r}; "
                         f"{cmp.float_differences} float-dependent figure(s) differ in all")
    if cmp.conditions:
        lines.append("recorded conditions that differ (record vs re-run): " + "; ".join(map(str, cmp.conditions)))
    elif cmp.verdict != IDENTICAL:
        lines.append("recorded conditions that differ: none")
    if cmp.unrecorded:
        lines.append("not recorded by the original run, so not compared: " + ", ".join(cmp.unrecorded))
    lines += [f"note: {n}" for n in cmp.notes]
    return "\n".join(lines)
