"""The table a report shows for the BatchNorm variance-shift records of ``python -m poolstudy.bn_shift``.

The records (one JSON file per job, written by :mod:`poolstudy.bn_shift` from the measurements of
:mod:`poolstudy.evaluation.bn_shift`) are read as plain dicts: this module needs neither torch nor a model.
"""

from __future__ import annotations

SEED_DROPOUT = 0.4  # the seed's Dropout(0.4), model.dropout's default in conf/arch/lenet.yaml


def _ratio(spread: dict | None, full: bool = True) -> str:
    if not spread:
        return "—"
    return f"{spread['mean']:.2f} [{spread['min']:.2f}, {spread['max']:.2f}]" if full else f"{spread['mean']:.2f}"


def records_markdown(records: list[dict]) -> str:
    """The table a report shows for ``poolstudy.bn_shift`` JSON records (see poolstudy.bn_shift)."""
    records = sorted(records, key=lambda r: (r["dataset"], str(r["model"]["downsample"]["type"]),
                                             str(r["model"].get("dropout")), str(r["model"].get("dropout_position")),
                                             r["seed"]))
    headers = ["dataset", "model", "BatchNorm layer (channels)", "running var / input var, as trained: mean [min, max]",
               "with dropout on (as in training): mean", "after re-estimation: mean [min, max]",
               "mean offset, as trained → re-estimated", "test accuracy %, as trained → re-estimated"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in records:
        model = r["model"]
        name = str(model["downsample"]["type"])
        if model.get("dropout") != SEED_DROPOUT or model.get("dropout_position") not in (None, "before_bn"):
            name += f" (dropout {model.get('dropout')}, {model.get('dropout_position') or 'before_bn'})"
        for layer in r["layers"]:
            before, after = layer["as_trained"].get("mean_offset"), layer["re_estimated"].get("mean_offset")
            lines.append("| " + " | ".join([
                r["dataset"], f"{name}, seed {r['seed']}", f"{layer['layer']} ({layer['channels']})",
                _ratio(layer["as_trained"]["var_ratio"]), _ratio(layer["dropout_on"]["var_ratio"], full=False),
                _ratio(layer["re_estimated"]["var_ratio"]),
                "—" if before is None or after is None else f"{before:.2f} → {after:.2f}",
                f"{100 * r['test_acc_raw']:.2f} → {100 * r['test_acc']:.2f}"]) + " |")
    commands = sorted({r.get("command", "?") for r in records})
    measured = sorted({f"{r['dataset']}: {r['measured_on']}" for r in records})
    dead = sum(layer[k].get("dead_channels", 0) for r in records for layer in r["layers"]
               for k in ("as_trained", "re_estimated"))
    notes = [
        f"Measured by {'; '.join(f'`{c}`' for c in commands)} on each job's held-out data ({'; '.join(measured)}). "
        "Per BatchNorm layer: its running variance divided by the variance of its input, per channel, in "
        "evaluation mode (dropout off, earlier BatchNorm layers on their running statistics, as at test time); "
        "1 means the layer normalises its test-time input to unit variance, above 1 it shrinks it. \"With "
        "dropout on\": the same with the Dropout layer in training mode, i.e. the input the running statistics "
        "were estimated on. \"After re-estimation\": once `trainer.bn_recalibration` has recomputed the running "
        "statistics with dropout off. Mean offset: the distance between running mean and input mean in input standard "
        "deviations, averaged over channels. Each model's test accuracies are its job's `test_acc_raw` and "
        "`test_acc`, reproduced exactly from its checkpoint before measuring.",
    ]
    if dead:
        notes.append(f"{dead} channel measurements had (near) zero input variance and are left out of the ratios.")
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes)
