"""Collect job folders into tables, statistics, plots and a report.

    python -m poolstudy.collect outputs/multirun/2026-01-01/12-00-00
    python -m poolstudy.collect outputs --by model.downsample.type,dataset --baseline maxpool --out report/
    poolstudy-collect sweeps_out --storage sqlite:///hpo.db --study maxpool_mnist strided_mnist
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import yaml

from poolstudy.results import consistency, hpo_studies as hpo, plots, records, replicates, screening
from poolstudy.results.cells import make_grouping
from poolstudy.results.metric_compare import compare_metrics, parse_metrics
from poolstudy.results.report import Collection, write_outputs
from poolstudy.results.aggregate import DEFAULT_BASELINE, METRICS, summarise
from poolstudy.errors import PoolStudyError
from poolstudy.jobfolder import SNAPSHOT_DIR

DEFAULT_INPUT = "outputs"
OUT_SUBDIR = "collected"


def _keys(text: str | None) -> list[str] | None:
    return None if text is None else [k.strip() for k in text.split(",") if k.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m poolstudy.collect",
        description="Turn run, multirun and HPO-sweep folders into tables (Markdown, CSV, LaTeX), statistics "
                    "against a baseline variant, PNG plots and an index.md report.")
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help=f"folders to search for job folders (default: {DEFAULT_INPUT}, unless --storage is given)")
    parser.add_argument("--out", type=Path, help=f"output folder (default: <first PATH>/{OUT_SUBDIR})")
    parser.add_argument("--by", help="comma-separated grouping keys: any dotted config key, 'tuning', or an alias "
                                     "(dataset, arch, model, kernel, stride, padding). Default: model.arch, "
                                     "model.downsample.{type,kernel_size,stride}, tuning (when HPO results "
                                     "exist), dataset.name")
    parser.add_argument("--panel", help="the grouping key whose values are the datasets/columns (default: dataset.name)")
    parser.add_argument("--metric", choices=METRICS, default="test_acc", help="the accuracy compared (default: test_acc)")
    parser.add_argument("--compare-metrics", metavar="A,B",
                        help="also tabulate two metrics side by side (e.g. test_acc_raw,test_acc): both means, "
                             "both tests against the baseline, sign flips, the paired change and the rankings")
    parser.add_argument("--fill-missing", action="append", default=[], metavar="KEY=VALUE",
                        help="for jobs whose config snapshot lacks KEY (recorded before the key existed), take "
                             "VALUE (YAML); the report's notes say how many jobs it filled. Repeatable")
    parser.add_argument("--baseline", help=f"variant label or downsampling type to test against (default: {DEFAULT_BASELINE})")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm correction")
    parser.add_argument("--ignore", help="comma-separated config keys (or key prefixes) the consistency check ignores")
    parser.add_argument("--storage", help="Optuna storage URL to read HPO studies from (e.g. sqlite:///hpo.db)")
    parser.add_argument("--study", nargs="+", metavar="NAME", help="studies to read from --storage (default: all)")
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    parser.add_argument("--formats", metavar="LIST",
                        help="the figures' file formats, comma-separated from png, svg, pdf (default: png,svg; PNG is "
                             "always written, index.md shows it; SVG is what report.html inlines)")
    # poolstudy.tracking.backfill
    parser.add_argument("--to-mlflow", metavar="URI",
                        help="also log every complete job to this MLflow store (e.g. sqlite:///outputs/mlflow.db), "
                             "skipping records already there; one experiment per PATH")
    parser.add_argument("--mlflow-experiment", metavar="NAME", help="with --to-mlflow: one experiment NAME for all")
    parser.add_argument("--quiet", action="store_true", help="do not print the Markdown summary")
    return parser


def _check_out(out: Path) -> None:
    """The output folder must not be a job folder: results go next to the runs, never over them."""
    if (out / SNAPSHOT_DIR).exists() or SNAPSHOT_DIR in out.parts:
        raise PoolStudyError(f"--out {out}: is a job folder (it holds .hydra/); choose a folder of its own, "
                             f"e.g. {out / OUT_SUBDIR}.")
    if out.exists() and not out.is_dir():
        raise PoolStudyError(f"--out {out}: exists and is not a folder.")


def _report(warnings: records.Warnings, notices: list[str]) -> None:
    """Reading problems, then what is not counted and why, one line each on stderr."""
    for line in [*warnings, *notices]:
        print(f"warning: {line}".replace("\n", " "), file=sys.stderr)


def _fill_missing(jobs: list[records.Job], specs: list[str]) -> list[str]:
    """Applies --fill-missing KEY=VALUE to the snapshots that lack KEY; returns a note per key used."""
    notes = []
    for spec in specs:
        key, sep, text = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PoolStudyError(f"--fill-missing {spec!r}: write KEY=VALUE, e.g. "
                                 "--fill-missing model.dropout_position=before_bn.")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise PoolStudyError(f"--fill-missing {spec!r}: the value {text!r} is not valid YAML.") from None
        if isinstance(value, (dict, list)):
            raise PoolStudyError(f"--fill-missing {spec!r}: the value must be a single number or text.")
        filled = [job for job in jobs if job.config and key not in job.config]
        for job in filled:
            job.config[key] = value
        notes.append(f"{len(filled)} of {len(jobs)} jobs had no {key} in their config snapshot; taken as "
                     f"{value!r} (--fill-missing).")
    return notes


def gather(args: argparse.Namespace, argv: list[str]) -> tuple[Collection, Path]:
    """Reads and summarises everything ``args`` names; returns the collection and its output folder."""
    if not 0 < args.alpha < 1:
        raise PoolStudyError(f"--alpha {args.alpha}: must be between 0 and 1 (e.g. 0.05).")
    if args.study and not args.storage:
        raise PoolStudyError("--study needs --storage URL (the Optuna storage the studies are in).")
    paths = args.paths or ([] if args.storage else [DEFAULT_INPUT])
    out = args.out or (Path(paths[0]) / OUT_SUBDIR if paths else Path(OUT_SUBDIR))
    _check_out(out)

    warnings = records.Warnings()
    found = records.discover(paths, warnings, skip=out)
    notices = [f"{s.path}: skipped: {s.reason}" for s in found.skipped]
    try:  # every warning is printed, also when a mistake stops the collection
        filled = _fill_missing(found.jobs, args.fill_missing)  # before screening compares snapshots
        metrics = parse_metrics(args.compare_metrics) if args.compare_metrics else None
        jobs, excluded = screening.screen(found.jobs, args.metric, warnings)
        notices += [f"{e.path}: excluded: {e.reason}" for e in excluded]
        if not jobs and not found.studies and not args.storage:
            if found.jobs or found.skipped:
                raise PoolStudyError(
                    f"no poolstudy job to report under {', '.join(paths)}: {len(found.skipped)} folder(s) skipped "
                    f"and {len(excluded)} job(s) excluded, each with its reason above.")
            raise PoolStudyError(f"no job folders (folders holding .hydra/config.yaml) under {', '.join(paths)}; "
                                 "give run, multirun or HPO sweep folders, or outputs/.")
        grouping, cells = make_grouping(jobs, _keys(args.by), args.panel)
        duplicates, seed_flags = replicates.collapse(cells, args.metric)
        repeated = {id(job) for d in duplicates for job in d.dropped}
        jobs = [job for job in jobs if id(job) not in repeated]
        notices += [d.describe(args.metric) for d in duplicates]
        summary = summarise(cells, grouping, metric=args.metric, baseline=args.baseline or DEFAULT_BASELINE,
                            alpha=args.alpha, baseline_given=args.baseline is not None)
        summary.notes[:0] = filled
        comparison = None if metrics is None else compare_metrics(
            cells, grouping, metrics, baseline=args.baseline or DEFAULT_BASELINE, alpha=args.alpha,
            baseline_given=args.baseline is not None)
        repeated_trials: list[records.Job] = []
        studies = hpo.studies_from_folders(jobs, found.studies, grouping, cells, warnings, repeated_trials)
        jobs = [job for job in jobs if not any(job is trial for trial in repeated_trials)]
    finally:
        _report(warnings, notices)
    if args.storage:
        studies = hpo.merge(studies, hpo.studies_from_storage(args.storage, args.study, grouping, cells))
    flags = seed_flags + consistency.check(cells, grouping, _keys(args.ignore) or [])

    command = shlex.join(["python -m poolstudy.collect", *argv]).replace("'python -m poolstudy.collect'",
                                                                         "python -m poolstudy.collect")
    return Collection(command, list(paths), jobs, cells, summary, studies, flags, list(warnings),
                      duplicates, excluded, found.skipped, metric_comparison=comparison), out


def figure_formats(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """--formats LIST as a tuple of ``plots.FORMATS`` (``default`` when not given); PNG always first."""
    if text is None:
        return default
    asked = _keys(text) or []
    unknown = [f for f in asked if f not in plots.FORMATS]
    if unknown:
        raise PoolStudyError(f"--formats {text}: {unknown[0]!r} is not a figure format; choose from "
                             f"{', '.join(plots.FORMATS)}, e.g. --formats png,svg,pdf.")
    return ("png", *[f for f in plots.FORMATS if f in asked and f != "png"])


def collect(args: argparse.Namespace, argv: list[str]) -> int:
    collection, out = gather(args, argv)
    summary_md, files = write_outputs(collection, out, with_plots=not args.no_plots,
                                      formats=figure_formats(args.formats, plots.DEFAULT_FORMATS))
    if not args.quiet:
        print(summary_md, end="")
    print(f"wrote {len(files)} files to {out} (open {out / 'index.md'})", file=sys.stderr)
    if args.to_mlflow:  # poolstudy.tracking.backfill: the counted records, each logged once
        from poolstudy.tracking.backfill import backfill

        counted = collection.jobs + [job for d in collection.duplicates for job in d.dropped]
        print(backfill(counted, collection.inputs, args.to_mlflow, args.mlflow_experiment).line(), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        return collect(args, argv)
    except PoolStudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
