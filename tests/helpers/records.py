"""Job folders as train.py and the HPO sweeper leave them, made by the tests (no training), and running the
collector on them in-process."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from poolstudy.results.collector import main

BASE_CONFIG = {
    "model": {"_target_": "poolstudy.models.create_model", "arch": "lenet", "in_channels": "${dataset.channels}",
              "num_classes": "${dataset.num_classes}", "dropout": 0.4, "kernel_size": 5,
              "downsample": {"type": "maxpool", "kernel_size": 2, "stride": 2, "padding": 0}},
    "dataset": {"name": "mnist", "channels": 1, "image_size": 28, "num_classes": 10, "val_fraction": 0.1},
    "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.003, "weight_decay": 0.0},
    "trainer": {"epochs": 3, "batch_size": 128, "progress": "auto"},
    "seed": 0,
    "data_dir": "${oc.env:POOLSTUDY_DATA,./data}",
    "cache_dir": "/tmp/cache",
    "hpo": {"role": None, "study_name": None, "trial": None, "storage": None},
}
OPERATORS = {
    "maxpool": {"type": "maxpool", "kernel_size": 2, "stride": 2, "padding": 0},
    "strided": {"type": "strided", "kernel_size": 5, "stride": 2, "padding": None},
    "avgpool": {"type": "avgpool", "kernel_size": 2, "stride": 2, "padding": 0},
}
MACS = {"maxpool": 1_021_200, "strided": 580_200, "avgpool": 1_021_200}

# Test accuracies of the finished seeds, by (dataset, operator). fashion_mnist/avgpool's sixth job has a
# broken config snapshot and must still be placed (by its metrics.json).
ACC = {
    ("mnist", "maxpool"): [0.9812, 0.9840, 0.9795, 0.9861, 0.9833],
    ("mnist", "strided"): [0.9751, 0.9722, 0.9780, 0.9703, 0.9744],
    ("mnist", "avgpool"): [0.9820, 0.9801, 0.9853, 0.9832, 0.9790],
    ("fashion_mnist", "maxpool"): [0.9012, 0.8987, 0.9055, 0.9031, 0.8999],
    ("fashion_mnist", "strided"): [0.8890, 0.8934, 0.8871, 0.8902, 0.8915],
    ("fashion_mnist", "avgpool"): [0.9001, 0.8954, 0.9020, 0.8977, 0.8990, 0.9008],
}
# The extra (broken) job of each cell and the state it must be counted as.
BROKEN = {
    ("mnist", "maxpool"): "failed",
    ("mnist", "strided"): "invalid",
    ("mnist", "avgpool"): "partial",
    ("fashion_mnist", "maxpool"): "pruned",
    ("fashion_mnist", "strided"): "unreadable",
}


def set_dotted(tree: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def write_job(folder: Path, operator: str = "maxpool", dataset: str = "mnist", seed: int = 0,
              test_acc: float | None = None, state: str = "complete", config: dict | None = None,
              commit: str = "a" * 40, metrics_extra: dict | None = None, hpo: dict | None = None) -> Path:
    """A job folder as train.py leaves it: .hydra/config.yaml plus metrics.json or status.json."""
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["model"]["downsample"] = dict(OPERATORS[operator])
    cfg["dataset"]["name"] = dataset
    cfg["seed"] = seed
    if hpo:
        cfg["hpo"].update(hpo)
    for dotted, value in (config or {}).items():
        set_dotted(cfg, dotted, value)
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    if state == "complete":
        val_acc = test_acc - 0.002
        epochs = cfg["trainer"]["epochs"]
        metrics = {
            "status": "complete", "val_acc": val_acc, "test_acc": test_acc, "test_acc_raw": test_acc - 0.01,
            "params": 52_174, "macs": MACS[operator], "train_time_s": 10.0 + seed, "images_per_s": 5000.0 - seed,
            "epochs": epochs, "seed": seed,
            "history": [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.9, "val_loss": 0.5 / e,
                         "val_acc": val_acc - 0.01 * (epochs - e), "lr": 0.003, "epoch_time_s": 3.0}
                        for e in range(1, epochs + 1)],
            # what train.py records of the config it trained with (the collector checks the snapshot against it)
            "model": {"arch": cfg["model"]["arch"], "downsample": dict(cfg["model"]["downsample"]),
                      "dropout": cfg["model"].get("dropout")},
            "dataset": {"name": cfg["dataset"]["name"], "source": "test"},
            "optimizer": {"name": cfg["optimizer"]["_target_"].rsplit(".", 1)[-1], "lr": cfg["optimizer"]["lr"],
                          "weight_decay": cfg["optimizer"]["weight_decay"], "batch_size": cfg["trainer"]["batch_size"]},
            "environment": {"git_commit": commit, "git_dirty": False},
        }
        if hpo:
            metrics["hpo"] = {k: hpo.get(k) for k in ("study_name", "role", "trial")}
        metrics.update(metrics_extra or {})
        (folder / "metrics.json").write_text(json.dumps(metrics))
    elif state in ("invalid", "failed", "pruned"):
        (folder / "status.json").write_text(json.dumps({"status": state, "error": f"{state} because of a test"}))
    elif state == "unreadable":
        (folder / "metrics.json").write_text('{"status": "complete", "test_acc": 0.9')  # cut short
    return folder


def collect(*args, capsys=None) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    if capsys is None:
        return code, "", ""
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cells_by(results: dict) -> dict[tuple[str, str], dict]:
    return {(c["panel"], c["keys"]["model.downsample.type"] + (" tuned" if c["keys"].get("tuning") == "tuned" else "")):
            c for c in results["cells"]}


def make_hpo_sweep(root: Path) -> dict[str, list]:
    """The HPO sweeper's layout: <sweep>/<study>/{study_summary.json, trials/<n>/, final/seed<k>/}."""
    trial_values = {"lenet-maxpool-mnist": [0.970, None, 0.981, 0.975, "failed", 0.984],
                    "lenet-strided-mnist": [0.960, 0.972, None, 0.969, 0.977, 0.971]}
    finals = {"lenet-maxpool-mnist": [0.9871, 0.9880, 0.9866], "lenet-strided-mnist": [0.9810, 0.9822, 0.9801]}
    for name, values in trial_values.items():
        operator = name.split("-")[1]
        study = root / name
        for number, value in enumerate(values):
            hpo = {"role": "trial", "study_name": name, "trial": number}
            if value is None:
                write_job(study / "trials" / str(number), operator, state="pruned", hpo=hpo)
            elif value == "failed":
                write_job(study / "trials" / str(number), operator, state="failed", hpo=hpo)
            else:
                write_job(study / "trials" / str(number), operator, test_acc=value + 0.002, hpo=hpo,
                          config={"optimizer.lr": 0.001 * (number + 1)})
        best_trial = values.index(max(v for v in values if isinstance(v, float)))
        for seed, acc in enumerate(finals[name]):
            write_job(study / "final" / f"seed{seed}", operator, seed=seed, test_acc=acc, config={"optimizer.lr": 0.005},
                      hpo={"role": "final", "study_name": name, "trial": best_trial})
        (study / "study_summary.json").write_text(json.dumps({
            "study_name": name, "status": "complete", "cell": [f"model={operator}", "dataset=mnist"],
            "arch": "lenet", "downsample": operator, "dataset": "mnist",
            "best_params": {"optimizer.lr": 0.005, "trainer.batch_size": 64}, "best_val_acc": max(
                v for v in values if isinstance(v, float)), "best_trial": best_trial,
            "n_trials": 6, "n_complete": sum(isinstance(v, float) for v in values), "n_pruned": values.count(None),
            "n_failed": values.count("failed"), "sampler": "optuna.samplers.TPESampler", "sampler_seed": 0}))
    return {"trials": trial_values, "finals": finals}
