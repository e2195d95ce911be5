"""What pooling is supposed to buy: robustness of a trained model's predictions to small shifts.

Probes run on a fixed, stratified subset of the test set after training, the model in eval
mode, all shifts drawn from generators seeded by ``invariance.seed`` (so every variant and
training seed is probed on the same images and the same shifts):

- shift consistency (Zhang 2019): how often the predicted class is the same for two random
  shifts of an image, each drawn uniformly up to ``max_shift`` pixels per axis;
- accuracy under translation: accuracy with every image shifted by exactly d pixels
  (Chebyshev distance, all directions of the ring used equally often), d = 0 .. max_shift;
- prediction distance: mean total-variation (or KL) distance between the softmax outputs of
  an image and of its 1-pixel shift (Azulay & Weiss 2019: one pixel already matters);
- optionally, per top-level block, the relative change of the feature maps under that
  1-pixel shift, at initialisation and after training (Ruderman et al. 2018).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from poolstudy.data.loader import Normalizer
from poolstudy.data.shifts import Shifts, check_shift, shift_images, shifts_at_distance, uniform_shifts
from poolstudy.data.splits import stratified_subset
from poolstudy.errors import PoolStudyError

log = logging.getLogger(__name__)

STABILITY_METRICS = ("tv", "kl")


@dataclass(frozen=True)
class ProbeSettings:
    """The probes' settings: the ``invariance`` config node (conf/invariance/default.yaml states the defaults,
    once; see there what each means)."""

    max_shift: int
    padding: str
    passes: int
    subset: int | None
    seed: int
    stability_metric: str
    layerwise: bool

    @classmethod
    def from_config(cls, node: Any) -> ProbeSettings:
        """From the ``invariance`` node; PoolStudyError naming a key it lacks."""
        missing = [key for key in cls.__dataclass_fields__ if key not in node]
        if missing:
            raise PoolStudyError(f"invariance.{missing[0]} is missing from the config; the invariance probes need "
                                 f"{', '.join(f'invariance.{k}' for k in cls.__dataclass_fields__)} (defaults in "
                                 f"conf/invariance/default.yaml).")
        return cls(**{key: node[key] for key in cls.__dataclass_fields__})


@dataclass
class ProbeResults:
    """What the probes measured; each field is the ``metrics.json`` key of the same name.

    Attributes:
        shift_consistency: fraction in [0, 1] of (image, pair of random shifts) with the same predicted class
            (Zhang 2019).
        acc_vs_shift: ``{"0": acc, "1": acc, ...}``: accuracy (fraction) with every image shifted by exactly d
            pixels (Chebyshev distance), all directions of the ring equally often.
        prediction_distance_1px: mean total variation (in [0, 1]) or KL divergence (nats) between the softmax
            outputs of an image and of its 1-pixel shift (Azulay & Weiss 2019).
        layer_shift_change: with ``layerwise``, ``{"init"|"trained": {block: mean relative change}}`` of each
            top-level block's output under that shift (Ruderman et al. 2018); else ``None``.
    """

    shift_consistency: float
    acc_vs_shift: dict[str, float]
    prediction_distance_1px: float
    layer_shift_change: dict[str, dict[str, float]] | None = None


def _stream(seed: int, purpose: int) -> torch.Generator:
    """An independent generator per probe, so that e.g. more passes leave the curve's shifts alone."""
    state = np.random.SeedSequence([seed, purpose]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class _BlockOutputs:
    """Records the 4-D output of every top-level block (conv1, conv2, ...) of the last forward."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.outputs: dict[str, torch.Tensor] = {}
        self._hooks: list[Any] = []

    def __enter__(self) -> _BlockOutputs:
        for name, block in self.model.named_children():
            def keep(_module, _args, out, name=name):
                if isinstance(out, torch.Tensor) and out.dim() == 4:
                    self.outputs[name] = out

            self._hooks.append(block.register_forward_hook(keep))
        return self

    def __exit__(self, *exc: Any) -> None:
        for hook in self._hooks:
            hook.remove()

    def take(self) -> dict[str, torch.Tensor]:
        outputs, self.outputs = self.outputs, {}
        return outputs


def _inputs(images: torch.Tensor, shifts: Shifts | None, padding: str, normalize: Normalizer,
            start: int, stop: int) -> torch.Tensor:
    batch = images[start:stop]
    if shifts is not None:
        batch = shift_images(batch, shifts[0][start:stop], shifts[1][start:stop], padding)
    return normalize(batch)


@torch.inference_mode()
def _logits(model: nn.Module, images: torch.Tensor, normalize: Normalizer, shifts: Shifts | None, padding: str,
            batch_size: int) -> torch.Tensor:
    return torch.cat([model(_inputs(images, shifts, padding, normalize, start, start + batch_size))
                      for start in range(0, len(images), batch_size)])


@torch.inference_mode()
def _paired_logits(model: nn.Module, images: torch.Tensor, normalize: Normalizer, shifts_a: Shifts | None,
                   shifts_b: Shifts, padding: str, batch_size: int, blocks: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Logits of every image under two shifts; with ``blocks``, also the mean over images of
    ||block(x_b) - block(x_a)|| / ||block(x_a)|| for each top-level block."""
    out_a, out_b = [], []
    per_image: dict[str, list[torch.Tensor]] = {}
    with _BlockOutputs(model) as recorder:
        for start in range(0, len(images), batch_size):
            stop = start + batch_size
            out_a.append(model(_inputs(images, shifts_a, padding, normalize, start, stop)))
            maps_a = recorder.take()
            out_b.append(model(_inputs(images, shifts_b, padding, normalize, start, stop)))
            maps_b = recorder.take()
            if not blocks:
                continue
            for name, a in maps_a.items():
                a, b = a.flatten(1).double(), maps_b[name].flatten(1).double()
                per_image.setdefault(name, []).append((b - a).norm(dim=1) / a.norm(dim=1).clamp_min(1e-12))
    changes = {name: torch.cat(values).mean().item() for name, values in per_image.items()}
    return torch.cat(out_a), torch.cat(out_b), changes


def prediction_distance(logits_a: torch.Tensor, logits_b: torch.Tensor, metric: str) -> float:
    """Mean distance between the softmax outputs of two ``(N, classes)`` logit tensors, computed in float64.

    Args:
        metric: ``"tv"``: total variation, half the L1 distance, in [0, 1]; ``"kl"``: KL(p_a ‖ p_b) in nats.

    Raises:
        PoolStudyError: another ``metric`` (names ``invariance.stability_metric`` and the valid values).
    """
    log_p, log_q = F.log_softmax(logits_a.double(), 1), F.log_softmax(logits_b.double(), 1)
    if metric == "tv":
        per_image = 0.5 * (log_p.exp() - log_q.exp()).abs().sum(1)
    elif metric == "kl":
        per_image = (log_p.exp() * (log_p - log_q)).sum(1)
    else:
        raise PoolStudyError(f"invariance.stability_metric = {metric!r} is not valid: it must be one of "
                             f"{', '.join(STABILITY_METRICS)}.")
    return per_image.mean().item()


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).sum().item() / len(labels)


def probe_invariance(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, normalize: Normalizer,
                     settings: ProbeSettings, batch_size: int = 1024,
                     initial_model: nn.Module | None = None) -> ProbeResults:
    """Run every probe on ``images`` (uint8, N x C x H x W, on the model's device), shifting the
    raw pixels before normalisation so that zero padding means black.

    Args:
        model: the trained model (put in eval mode); logits ``(B, classes)`` from normalised ``(B, C, H, W)``.
        images: raw test images, uint8 ``(N, C, H, W)``.
        labels: int64 ``(N,)``.
        normalize: the job's per-channel normalisation, applied after each shift.
        settings: the ``invariance`` node (subset, shifts in pixels, passes, seed, metric).
        batch_size: images per forward pass.
        initial_model: the same architecture freshly initialised, for ``layer_shift_change["init"]``.

    Raises:
        PoolStudyError: ``max_shift`` below 1 or not smaller than the image side, or an unknown metric.
    """
    check_shift("invariance.max_shift", settings.max_shift, tuple(images.shape))
    if settings.max_shift < 1:
        raise PoolStudyError(f"invariance.max_shift = {settings.max_shift} is not valid: it must be an integer >= 1.")
    if settings.subset is not None and settings.subset < len(labels):
        keep = stratified_subset(labels.cpu(), settings.subset, settings.seed).to(labels.device)
        images, labels = images[keep], labels[keep]
    n, device, padding = len(labels), images.device, settings.padding
    on_device = lambda shifts: (shifts[0].to(device), shifts[1].to(device))  # noqa: E731
    model.eval()

    consistency_draws = _stream(settings.seed, 0)
    agreeing = 0
    for _ in range(settings.passes):
        first = on_device(uniform_shifts(n, settings.max_shift, consistency_draws))
        second = on_device(uniform_shifts(n, settings.max_shift, consistency_draws))
        logits_a, logits_b, _ = _paired_logits(model, images, normalize, first, second, padding, batch_size)
        agreeing += (logits_a.argmax(1) == logits_b.argmax(1)).sum().item()

    curve_draws = _stream(settings.seed, 1)
    one_pixel = on_device(shifts_at_distance(n, 1, curve_draws))
    centred, shifted, trained_changes = _paired_logits(model, images, normalize, None, one_pixel, padding,
                                                       batch_size, blocks=settings.layerwise)
    acc_vs_shift = {"0": _accuracy(centred, labels), "1": _accuracy(shifted, labels)}
    for distance in range(2, settings.max_shift + 1):
        shifts = on_device(shifts_at_distance(n, distance, curve_draws))
        acc_vs_shift[str(distance)] = _accuracy(_logits(model, images, normalize, shifts, padding, batch_size), labels)

    layer_changes = None
    if settings.layerwise:
        layer_changes = {"trained": trained_changes}
        if initial_model is not None:
            initial_model.eval()
            _, _, layer_changes["init"] = _paired_logits(initial_model, images, normalize, None, one_pixel, padding,
                                                         batch_size, blocks=True)
    return ProbeResults(
        shift_consistency=agreeing / (settings.passes * n),
        acc_vs_shift=acc_vs_shift,
        prediction_distance_1px=prediction_distance(centred, shifted, settings.stability_metric),
        layer_shift_change=layer_changes,
    )


def _seeded_model(factory: Callable[[], nn.Module], seed: int, device: torch.device) -> nn.Module:
    """The model as initialised from the job's seed, built without disturbing the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory().to(device)


def invariance_metrics(cfg: Any, model: nn.Module, data: Any, initial_model: Callable[[], nn.Module] | None = None
                       ) -> dict[str, Any]:
    """The ``metrics.json`` entries of the probes for one finished job (``data`` is its DataSplits).

    Returns ``{"invariance": settings and ``time_s`` (seconds), ...}`` plus the :class:`ProbeResults` fields when
    ``invariance.enabled``; with the probes off only the settings and the dataset's test shift.
    """
    node = cfg.invariance
    record: dict[str, Any] = {"enabled": bool(node.enabled)}
    dataset = cfg.dataset
    record["test_shift"] = int(dataset.get("test_shift") or 0)
    record["test_shift_padding"] = dataset.get("test_shift_padding", "zero")
    if not node.enabled:
        return {"invariance": record}
    settings = ProbeSettings.from_config(node)
    test_x, test_y = data.test
    device = test_x.device
    start = time.perf_counter()
    initial = None
    if settings.layerwise and initial_model is not None:
        initial = _seeded_model(initial_model, int(cfg.seed), device)
    batch_size = int(cfg.trainer.eval_batch_size)
    normalize = Normalizer(data.mean, data.std, device)
    results = probe_invariance(model, test_x, test_y, normalize, settings, batch_size, initial)
    seconds = time.perf_counter() - start
    record.update(asdict(settings))
    record["test_images"] = min(len(test_y), settings.subset or len(test_y))
    record["time_s"] = seconds
    log.info("Invariance (%d test images, shifts up to %d px, %s padding): consistency %.2f%%, accuracy by shift %s, "
             "1-px %s distance %.4f (%.1fs)", record["test_images"], settings.max_shift, settings.padding,
             100 * results.shift_consistency,
             " ".join(f"{d}px {100 * a:.2f}%" for d, a in results.acc_vs_shift.items()),
             settings.stability_metric, results.prediction_distance_1px, seconds)
    metrics = {
        "shift_consistency": results.shift_consistency,
        "acc_vs_shift": results.acc_vs_shift,
        "prediction_distance_1px": results.prediction_distance_1px,
        "invariance": record,
    }
    if results.layer_shift_change is not None:
        metrics["layer_shift_change"] = results.layer_shift_change
    return metrics
