"""Every study behind RESULTS.md, from scratch, sized for a 2-core CPU: runs their configs and archives them.

    python sweeps/make_results.py            # run (or resume) every study, archive its records, publish
    python sweeps/make_results.py --list     # the commands, nothing run
    python sweeps/make_results.py --only operator_zoo kernel_stride_grid
    python sweeps/make_results.py --publish  # archive + RESULTS.md only, from what outputs/results/ holds
    python sweeps/make_results.py --only beyond_lenet_resnet beyond_lenet_vgg   # the "Beyond LeNet" section

Each study runs into outputs/results/<study>/ (a fixed folder: an interrupted study resumes, finished jobs
are skipped); a study whose study.json exists is not run again, so its measured wall time is kept. Its
small records are then copied to docs/studies/<study>/ (committed), and `python -m poolstudy.publish
RESULTS.md` rewrites the report's tables from them.

What each step trains is its experiment config (conf/experiment/, results/ for the reduced versions this
machine ran); this runner only adds how the machine runs it (CPU), the folder, and the operators a step
chooses from the results of the step before it. On a GPU the CPU budget goes (FULL_SCALE), the
local_parallel launcher too, and trainer.device=cuda is added; the commands are printed with --list --gpu.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = Path("outputs/results")
RECORDS = Path("docs/studies")
TRAIN = [sys.executable, "train.py", "-m"]
# How this 2-core CPU runs a study: two jobs at a time, one torch thread each, no progress bars.
CPU = ["hydra/launcher=local_parallel", "trainer.progress=false"]
ZOO_TUNED = 2  # the zoo's best operators (by validation accuracy) tuned besides maxpool and strided

# Each study: its steps, in order, as (experiment config in conf/experiment/, sub-folder of
# outputs/results/<study>/ or "" for the study's own folder). What each step trains is in its config.
STUDIES: dict[str, list[tuple[str, str]]] = {
    # 1. the seed's question at the trainer's defaults (full training sets, 5 epochs), 5 seeds
    "seed_replication": [("seed_replication", "")],
    # 1b. the same pair, each tuned with the same Optuna budget, against untuned runs at that budget
    "seed_replication_tuned": [("results/seed_replication_tuned_untuned", "untuned"),
                               ("results/seed_replication_tuned_hpo", "hpo")],
    # 2. eight operators at the reduced budget; the best two others (validation accuracy) tuned
    "operator_zoo": [("results/operator_zoo_defaults", "defaults"), ("results/operator_zoo_tuned", "hpo")],
    # 3. kernel size x stride on Fashion-MNIST (invalid cells are recorded, not crashed)
    "kernel_stride_grid": [("results/kernel_stride_grid", "")],
    # 4. Springenberg et al.'s Model C family on CIFAR-10 (reduced width and data, 4 epochs)
    "allcnn_c_family": [("results/allcnn_c_family", "")],
    # 0b. the fixes for the seed's dropout -> BatchNorm variance shift, at the defaults, 3 seeds: no dropout,
    # and dropout after every BatchNorm (seed_replication holds the seed's placement)
    "dropout_fixes": [("results/dropout_fixes_no_dropout", "no_dropout"),
                      ("results/dropout_fixes_after_bn", "after_bn")],
    # 6. all ten operators on CIFAR-10 at the defaults, 3 seeds
    "operator_zoo_cifar10": [("results/operator_zoo_cifar10", "")],
    # 7. beyond LeNet: ResNet-20 and VGG-11 (width 0.25) on CIFAR-10, maxpool/strided/avgpool/blurpool,
    # 3 seeds each (the configs' reduced budget: 10,000 images, 5 epochs)
    "beyond_lenet_resnet": [("beyond_lenet_resnet", "")],
    "beyond_lenet_vgg": [("beyond_lenet_vgg", "")],
}
# Overrides of a step chosen from the results of the steps before it.
CHOSEN = {"results/operator_zoo_tuned": lambda: [f"model={_zoo_best(ZOO_TUNED)}"]}
CHOSEN_SHOWN = {"results/operator_zoo_tuned": ["model=<best two of the zoo>"]}
# --gpu: what the CPU budget of each step reduced (its config's data, epochs and width), back at full scale
FULL_SCALE = {
    "results/seed_replication_tuned_untuned": ["dataset.train_subset=null", "trainer.epochs=5"],
    "results/seed_replication_tuned_hpo": ["dataset.train_subset=null", "trainer.epochs=5"],
    "results/operator_zoo_defaults": ["dataset.train_subset=null", "trainer.epochs=5"],
    "results/operator_zoo_tuned": ["dataset.train_subset=null", "trainer.epochs=5"],
    "results/kernel_stride_grid": ["dataset.train_subset=null", "trainer.epochs=5"],
    "results/allcnn_c_family": ["model.width=1.0", "dataset.train_subset=null", "trainer.epochs=100"],
    # He et al. (2016)'s optimizer and 182 epochs (cosine instead of their two lr steps), all the data
    "beyond_lenet_resnet": ["dataset.train_subset=null", "invariance.subset=2000", "trainer.epochs=182",
                            "optimizer=sgd", "optimizer.lr=0.1", "optimizer.nesterov=false",
                            "optimizer.weight_decay=1e-4", "scheduler=cosine"],
}
FULL_SCALE["beyond_lenet_vgg"] = ["model.width=1.0", *FULL_SCALE["beyond_lenet_resnet"]]


def _zoo_best(n: int) -> str:
    """The n operators with the highest mean validation accuracy in the zoo (never test accuracy), other
    than maxpool and strided, which seed_replication_tuned tunes on the same budget, and none, the
    no-downsampling reference whose ~29x MACs would make its HPO cost more than all the rest together."""
    from poolstudy.results import collector as collect

    parser = collect.build_parser()
    args = parser.parse_args([str(OUTPUTS / "operator_zoo" / "defaults"), "--by", "model.downsample.type",
                              "--metric", "val_acc", "--out", str(OUTPUTS / "operator_zoo" / "selection")])
    collection, _ = collect.gather(args, [])
    scores: dict[str, list[float]] = {}
    for row in collection.summary.rows:
        if row.val_acc is not None and row.val_acc.n:
            scores.setdefault(row.cell.values["model.downsample.type"], []).append(row.val_acc.mean)
    ranked = sorted((op for op in scores if op not in ("maxpool", "strided", "none")),
                    key=lambda op: -sum(scores[op]) / len(scores[op]))
    return ",".join(ranked[:n])


def command(study: str, experiment: str, folder: str, chosen: list[str] | None = None,
            gpu: bool = False) -> list[str]:
    """train.py's argv for one step: the experiment, the overrides chosen from earlier steps, how this
    machine runs it (``CPU``, or on a GPU the full scale and ``trainer.device=cuda``), and its folder."""
    machine = [*FULL_SCALE.get(experiment, []), "trainer.device=cuda"] if gpu else CPU
    sweep_dir = OUTPUTS / study / folder if folder else OUTPUTS / study
    return [*TRAIN, f"experiment={experiment}", *(chosen or []), *machine, f"hydra.sweep.dir={sweep_dir}"]


def _show(argv: list[str]) -> str:
    return shlex.join(["python", *argv[1:]])


def _job_folders(folder: Path) -> int:
    return sum(1 for p in folder.rglob(".hydra") if (p / "config.yaml").is_file())


def _machine() -> str:
    import torch

    return f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}"


def run_study(name: str) -> None:
    folder = OUTPUTS / name
    record = folder / "study.json"
    if record.is_file():
        print(f"[{name}] already run ({record}); kept", flush=True)
        return
    commands: list[str] = []
    start = time.perf_counter()
    for experiment, sub in STUDIES[name]:
        argv = command(name, experiment, sub, CHOSEN[experiment]() if experiment in CHOSEN else None)
        commands.append(_show(argv))
        print(f"[{name}] {commands[-1]}", flush=True)
        if subprocess.run(argv).returncode != 0:
            raise RuntimeError(f"[{name}] stopped: {commands[-1]} failed; re-run to resume it")
    wall = time.perf_counter() - start
    folder.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({
        "study": name, "commands": commands, "wall_s": round(wall, 1), "jobs": _job_folders(folder),
        "date": datetime.date.today().isoformat(), "machine": _machine()}, indent=2) + "\n")
    print(f"[{name}] done in {wall / 60:.1f} min", flush=True)


def publish(names: list[str]) -> None:
    from poolstudy.results.archive import archive
    from poolstudy.results.publish import main as publish_main

    for name in names:
        if (OUTPUTS / name / "study.json").is_file():
            n = archive(OUTPUTS / name, RECORDS / name)
            print(f"[{name}] {n} record files -> {RECORDS / name}", flush=True)
    code = publish_main(["RESULTS.md"])
    if code:
        sys.exit(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(STUDIES), help="these studies only")
    parser.add_argument("--list", action="store_true", help="print the commands and stop")
    parser.add_argument("--gpu", action="store_true", help="with --list: the full-budget GPU commands")
    parser.add_argument("--publish", action="store_true", help="archive and publish only; run nothing")
    args = parser.parse_args()
    os.chdir(ROOT)
    names = args.only or list(STUDIES)
    if args.list:
        for name in names:
            for experiment, sub in STUDIES[name]:
                print(f"{name}: {_show(command(name, experiment, sub, CHOSEN_SHOWN.get(experiment), args.gpu))}")
        return
    failed = []
    if not args.publish:
        for name in names:
            try:
                run_study(name)
            except RuntimeError as exc:
                print(exc, file=sys.stderr, flush=True)
                failed.append(name)
    publish(names)
    if failed:
        sys.exit(f"not finished: {', '.join(failed)}")


if __name__ == "__main__":
    main()
