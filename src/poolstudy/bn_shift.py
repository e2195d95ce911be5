"""Measure the dropout -> BatchNorm variance shift of trained jobs, per BatchNorm layer.

    python -m poolstudy.bn_shift JOB_FOLDER ... --out docs/bn_shift
    python -m poolstudy.bn_shift --train model=maxpool,strided dataset=mnist,cifar10 seed=0 --out docs/bn_shift

A job folder must hold its final ``checkpoint.pt``, which a job keeps only with
``checkpoint.keep=true``. ``--train OVERRIDE ...`` first runs ``python train.py -m OVERRIDE ...
checkpoint.keep=true trainer.progress=false hydra.sweep.dir=WORKDIR`` (finished jobs there are not
trained again) and then measures every finished job under WORKDIR.

For each job, on its validation split (held-out training images, never the test set): every
BatchNorm layer's running variance against the per-channel variance of its input in evaluation mode
(dropout off), first as trained, then after the re-estimation the trainer applies by default
(``trainer.bn_recalibration``: the same training batches, seed and batch count as the job used),
plus the input variance with dropout on, as in training. The model is checked to be the one the
job's record describes: its test accuracy before and after re-estimation must equal metrics.json's
``test_acc_raw`` and ``test_acc``. One JSON file per job goes to --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from poolstudy.evaluation.bn_shift import compare_with_running_stats, measure_bn_inputs
from poolstudy.results.bn_shift_records import SEED_DROPOUT
from poolstudy.jobfolder import CHECKPOINT_FILE, CONFIG_SNAPSHOT, METRICS_FILE
from poolstudy.results.records import Warnings, discover
from poolstudy.errors import PoolStudyError
from poolstudy.utils.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[2]  # the checkout that holds train.py
DEFAULT_WORKDIR = Path("outputs/bn_shift")
FORMAT = "poolstudy.bn_shift/1"


def _fail(job: Path, message: str) -> PoolStudyError:
    return PoolStudyError(f"{job}: {message}")


def _load_record(job: Path) -> tuple[Any, dict, dict]:
    """(config, metrics, checkpoint state) of a finished job that kept its final checkpoint."""
    snapshot, metrics_path, checkpoint = job / CONFIG_SNAPSHOT, job / METRICS_FILE, job / CHECKPOINT_FILE
    if not snapshot.is_file():
        raise _fail(job, f"has no {CONFIG_SNAPSHOT}; give a job folder (one that train.py wrote).")
    if not metrics_path.is_file() or json.loads(metrics_path.read_text()).get("status") != "complete":
        raise _fail(job, f"has no complete {METRICS_FILE}: the job has not finished.")
    if not checkpoint.is_file():
        raise _fail(job, f"has no {CHECKPOINT_FILE}: a finished job keeps it only with checkpoint.keep=true. "
                         "Re-run the job with checkpoint.keep=true in a new folder, or let this command train it: "
                         "python -m poolstudy.bn_shift --train OVERRIDES.")
    metrics = json.loads(metrics_path.read_text())
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if state.get("epoch") != metrics.get("epochs"):
        raise _fail(job, f"{CHECKPOINT_FILE} is from epoch {state.get('epoch')}, the job trained "
                         f"{metrics.get('epochs')} epochs; it is not the final model.")
    return OmegaConf.load(snapshot), metrics, state


def _same(job: Path, what: str, measured: float, recorded: Any) -> None:
    if recorded != measured:
        raise _fail(job, f"the model from {CHECKPOINT_FILE} scores {what} = {measured!r}, but {METRICS_FILE} "
                         f"records {recorded!r}: the checkpoint is not the model the record describes (or this "
                         "machine computes differently); nothing was written.")


def measure_job(job: Path) -> dict[str, Any]:
    """The shift record of one finished job (see the module docstring)."""
    from poolstudy.data import load_splits
    from poolstudy.evaluation.batchnorm import has_batchnorm, recalibrate_batchnorm
    from poolstudy.evaluation.evaluate import evaluate
    from poolstudy.jobs.run import build_model
    from poolstudy.training.placement import place_model, resolve_device

    cfg, metrics, state = _load_record(job)
    trainer = cfg.trainer
    threads = (metrics.get("environment") or {}).get("torch_threads")
    if threads:
        torch.set_num_threads(int(threads))  # the job's own thread count: the same sums, the same floats
    device = resolve_device(trainer.device)
    data = load_splits(cfg.dataset, cfg.data_dir, cfg.cache_dir).to(device)
    model = build_model(cfg, data.image_shape[0], data.num_classes)
    model.load_state_dict(state["model"])
    if not has_batchnorm(model):
        raise _fail(job, f"its model ({cfg.model.arch}) has no BatchNorm layer, so there is no variance shift to "
                         "measure.")
    place_model(model, trainer.get("channels_last", False), device)
    val = data.batches("val", int(trainer.eval_batch_size), device)
    test = data.batches("test", int(trainer.eval_batch_size), device)

    _, test_acc_raw = evaluate(model, test)
    _same(job, "test_acc_raw", test_acc_raw, metrics.get("test_acc_raw"))
    as_trained = compare_with_running_stats(model, measure_bn_inputs(model, val))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.seed))
        dropout_on = compare_with_running_stats(model, measure_bn_inputs(model, val, dropout_active=True))
    recal = data.batches("train", int(trainer.batch_size), device, shuffle=True,
                         generator=torch.Generator().manual_seed(int(cfg.seed)))
    images = recalibrate_batchnorm(model, recal, trainer.get("bn_recalibration_batches"))
    _, test_acc = evaluate(model, test)
    if metrics.get("bn_recalibrated"):
        _same(job, "test_acc", test_acc, metrics.get("test_acc"))
    re_estimated = compare_with_running_stats(model, measure_bn_inputs(model, val))

    layers = []
    for trained, on, after in zip(as_trained, dropout_on, re_estimated):
        layers.append({"layer": trained["layer"], "channels": trained["channels"],
                       "as_trained": trained, "dropout_on": on, "re_estimated": after})
    model_cfg = OmegaConf.to_container(cfg.model, resolve=False)
    return {
        "format": FORMAT,
        "job": str(job),
        "dataset": cfg.dataset.name,
        "model": {"arch": model_cfg.get("arch"), "downsample": model_cfg.get("downsample"),
                  "dropout": model_cfg.get("dropout"), "dropout_position": model_cfg.get("dropout_position")},
        "seed": int(cfg.seed), "epochs": metrics.get("epochs"),
        "measured_on": f"validation split, {len(data.val[1])} images",
        "re_estimation": f"{images} training images (trainer.bn_recalibration_batches = "
                         f"{trainer.get('bn_recalibration_batches')}, batch {int(trainer.batch_size)})",
        "test_acc_raw": test_acc_raw, "test_acc": test_acc,
        "git_commit": (metrics.get("environment") or {}).get("git_commit"),
        "git_dirty": (metrics.get("environment") or {}).get("git_dirty"),
        "layers": layers,
    }


def record_name(record: dict[str, Any]) -> str:
    model = record["model"]
    parts = [record["dataset"], str(model["downsample"]["type"])]
    if model.get("dropout") != SEED_DROPOUT:
        parts.append(f"dropout{model.get('dropout')}")
    if model.get("dropout_position") not in (None, "before_bn"):
        parts.append(str(model["dropout_position"]))
    return "-".join(parts) + f"-seed{record['seed']}.json"


def train(overrides: list[str], workdir: Path) -> str:
    """Runs the jobs with train.py; returns the command as typed."""
    script = ROOT / "train.py"
    if not script.is_file():
        raise PoolStudyError(f"--train needs train.py of a poolstudy checkout; {script} does not exist.")
    argv = [sys.executable, str(script), "-m", *overrides, "checkpoint.keep=true", "trainer.progress=false",
            f"hydra.sweep.dir={workdir}"]
    shown = shlex.join(["python", "train.py", *argv[2:]])
    print(f"training: {shown}", file=sys.stderr, flush=True)
    if subprocess.run(argv).returncode != 0:
        raise PoolStudyError(f"training stopped: {shown} failed (see its output above); re-run to resume it.")
    return shown


def job_folders(paths: list[str]) -> list[Path]:
    warnings = Warnings()
    found = discover(paths, warnings)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    for folder in found.skipped:
        print(f"warning: {folder.path}: skipped: {folder.reason}", file=sys.stderr)
    return [Path(job.path) for job in found.jobs if job.status == "complete"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m poolstudy.bn_shift", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", metavar="JOB_FOLDER",
                        help="finished jobs run with checkpoint.keep=true (searched recursively)")
    parser.add_argument("--train", nargs="+", metavar="OVERRIDE",
                        help="train.py overrides to run (as a multirun) before measuring")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"the multirun folder --train writes to (default {DEFAULT_WORKDIR})")
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON records (one per job)")
    parser.add_argument("--overwrite", action="store_true", help="replace records in --out that differ")
    args = parser.parse_args(argv)
    try:
        if bool(args.paths) == bool(args.train):
            raise PoolStudyError("give either job folders or --train OVERRIDES (not both, not neither).")
        command = shlex.join(["python", "-m", "poolstudy.bn_shift", *(sys.argv[1:] if argv is None else argv)])
        if args.train:
            train(args.train, args.workdir)
        jobs = job_folders([str(args.workdir)] if args.train else args.paths)
        if not jobs:
            raise PoolStudyError(f"no finished job folders under {', '.join(args.paths or [str(args.workdir)])}.")
        records = [measure_job(job) for job in jobs]  # all measured before anything is written
        targets = []
        for record in records:
            record["command"] = command
            path = args.out / record_name(record)
            text = json.dumps(record, indent=2) + "\n"
            if path.is_file() and path.read_text() != text and not args.overwrite:
                raise PoolStudyError(f"{path} exists and holds another measurement; nothing was written. Give "
                                     "another --out, or --overwrite to replace it.")
            targets.append((path, record))
        for path, record in targets:
            atomic_write_json(path, record)
            print(f"wrote {path}", file=sys.stderr)
    except PoolStudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
