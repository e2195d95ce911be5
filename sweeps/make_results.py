"""Every study behind RESULTS.md, from scratch, sized for a 2-core CPU.

    python sweeps/make_results.py            # run (or resume) every study, archive its records, publish
    python sweeps/make_results.py --list     # the commands, nothing run
    python sweeps/make_results.py --only operator_zoo kernel_stride_grid
    python sweeps/make_results.py --publish  # archive + RESULTS.md only, from what outputs/results/ holds
    python sweeps/make_results.py --only beyond_lenet_resnet beyond_lenet_vgg   # the "Beyond LeNet" section

Each study runs into outputs/results/<study>/ (a fixed folder: an interrupted study resumes, finished jobs
are skipped); a study whose study.json exists is not run again, so its measured wall time is kept. Its
small records are then copied to docs/studies/<study>/ (committed), and `python -m poolstudy.publish
RESULTS.md` rewrites the report's tables from them. A report block written before its records exist is
marked ``<!-- pending: poolstudy.collect docs/studies/<study> ... -->`` ... ``<!-- pending: /poolstudy.collect -->``
(publishing skips it); archiving the study turns it into a real block.

On a GPU, drop the CPU budget (BUDGET) and the local_parallel launcher and add trainer.device=cuda; the
commands are printed with --list --gpu.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = Path("outputs/results")
RECORDS = Path("docs/studies")
TRAIN = [sys.executable, "train.py", "-m"]
CPU = ["hydra/launcher=local_parallel", "trainer.progress=false"]
# The reduced budget every tuned/untuned comparison shares: 10,000 stratified training images, 3 epochs.
BUDGET = ["dataset.train_subset=10000", "trainer.epochs=3"]
HPO = ["hparams_search=optuna", "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=2"]
ZOO = "maxpool,avgpool,lppool,blurpool,strided,conv,convpool,none"
ZOO_TUNED = 2  # the zoo's best operators (by validation accuracy) tuned besides maxpool and strided
ALLCNN_BUDGET = ["trainer.epochs=4"]  # on top of the sweep file's width 0.25 and 10,000 images
# The full budget of each study on a GPU (--list --gpu), on top of dropping the CPU settings
GPU_BUDGET = {
    "allcnn_c_family": ["model.width=1.0", "dataset.train_subset=null", "trainer.epochs=100"],
    # He et al. (2016)'s optimizer and 182 epochs (cosine instead of their two lr steps), all the data
    "beyond_lenet_resnet": ["dataset.train_subset=null", "invariance.subset=2000",
                            "trainer.epochs=182", "optimizer=sgd", "optimizer.lr=0.1", "optimizer.nesterov=false",
                            "optimizer.weight_decay=1e-4", "scheduler=cosine"],
}
GPU_BUDGET["beyond_lenet_vgg"] = ["model.width=1.0", *GPU_BUDGET["beyond_lenet_resnet"]]


def _sweep(folder: str) -> str:
    return f"hydra.sweep.dir={OUTPUTS / folder}"


def _zoo_tuning(models: str) -> list[str]:
    return [*HPO, f"model={models}", "dataset=mnist,fashion_mnist", *BUDGET, *CPU, _sweep("operator_zoo/hpo")]


def _zoo_best(n: int) -> str:
    """The n operators with the highest mean validation accuracy in the zoo (never test accuracy), other
    than maxpool and strided, which seed_replication_tuned tunes on the same budget, and none, the
    no-downsampling reference whose ~29x MACs would make its HPO cost more than all the rest together."""
    from poolstudy import collect

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


STUDIES: dict[str, list] = {
    # 1. the seed's question at the trainer's defaults (full training sets, 5 epochs), 5 seeds
    "seed_replication": [
        ["+sweeps=seed_replication", *CPU, _sweep("seed_replication")],
    ],
    # 1b. the same pair, each tuned with the same Optuna budget, against untuned runs at that budget
    "seed_replication_tuned": [
        ["model=maxpool,strided", "dataset=mnist,fashion_mnist,cifar10", "seed=0,1,2,3,4", *BUDGET, *CPU,
         _sweep("seed_replication_tuned/untuned")],
        [*HPO, "model=maxpool,strided", "dataset=mnist,fashion_mnist,cifar10", *BUDGET, *CPU,
         _sweep("seed_replication_tuned/hpo")],
    ],
    # 2. eight operators at defaults; the best two others (validation accuracy) tuned
    "operator_zoo": [
        [f"model={ZOO}", "dataset=mnist,fashion_mnist", "seed=0,1,2", *BUDGET, *CPU,
         _sweep("operator_zoo/defaults")],
        lambda: _zoo_tuning(_zoo_best(ZOO_TUNED)),
    ],
    # 3. kernel size x stride on Fashion-MNIST (invalid cells are recorded, not crashed)
    "kernel_stride_grid": [
        ["+sweeps=kernel_stride_grid", "dataset=fashion_mnist", *BUDGET, *CPU, _sweep("kernel_stride_grid")],
    ],
    # 4. Springenberg et al.'s Model C family on CIFAR-10 (the sweep file's reduced width and data)
    "allcnn_c_family": [
        ["+sweeps=allcnn_c_family", *ALLCNN_BUDGET, *CPU, _sweep("allcnn_c_family")],
    ],
    # 6. beyond LeNet: ResNet-20 and a VGG-11 (width 0.25) on CIFAR-10, maxpool/strided/avgpool/blurpool,
    # 3 seeds each (the sweep files' reduced budget: 10,000 images, 5 epochs)
    "beyond_lenet_resnet": [
        ["+sweeps=beyond_lenet_resnet", *CPU, _sweep("beyond_lenet_resnet")],
    ],
    "beyond_lenet_vgg": [
        ["+sweeps=beyond_lenet_vgg", *CPU, _sweep("beyond_lenet_vgg")],
    ],
}


def _resolve(step) -> list[str]:
    return [*TRAIN, *(step() if callable(step) else step)]


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
    for step in STUDIES[name]:
        argv = _resolve(step)
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


PENDING = "<!-- pending: "


def enable_pending(text: str, name: str) -> str:
    """The report with the pending block of study ``name`` (module docstring) made a real block."""
    pattern = re.compile(rf"^{re.escape(PENDING)}(poolstudy\.collect {re.escape(str(RECORDS / name))}[ /].*?-->\n)"
                         rf"(.*?)^{re.escape(PENDING)}(/poolstudy\.collect -->)$", re.MULTILINE | re.DOTALL)
    return pattern.sub(r"<!-- \1\2<!-- \3", text)


def publish(names: list[str]) -> None:
    from poolstudy.analysis.archive import archive
    from poolstudy.publish import main as publish_main

    report = Path("RESULTS.md")
    for name in names:
        if (OUTPUTS / name / "study.json").is_file():
            n = archive(OUTPUTS / name, RECORDS / name)
            print(f"[{name}] {n} record files -> {RECORDS / name}", flush=True)
        if (RECORDS / name).is_dir():
            text = report.read_text()
            if enable_pending(text, name) != text:
                report.write_text(enable_pending(text, name))
                print(f"[{name}] its pending block in {report} is now published", flush=True)
    code = publish_main([str(report)])
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
            for step in STUDIES[name]:
                argv = [*TRAIN, *(_zoo_tuning("<the zoo's best two>") if callable(step) else step)]
                if args.gpu:
                    argv = [a for a in argv if a not in BUDGET + CPU + ALLCNN_BUDGET]
                    argv += [*GPU_BUDGET.get(name, []), "trainer.device=cuda"]
                print(f"{name}: {_show(argv)}")
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
