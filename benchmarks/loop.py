"""The project's training loop against the usual peer and the model's limit (``python -m benchmarks.bench``).

For each (data, model, batch size): the peer (a torchvision dataset class behind a DataLoader, as
pytorch/examples writes it), the project's loop (:func:`poolstudy.training.loop.train_epoch` over
device-resident batches), the limit (one pre-loaded batch), the peer's data feeding the project's
set-up, and the project's data path alone; see ``benchmarks/bench.py`` for what each figure means.
"""

from __future__ import annotations

import pickle
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import figures, interleaved, job_config, paired_ratio, project_batches, set_up, step, sync
from poolstudy.training.loop import train_epoch

PEER_DATASETS = ("mnist", "cifar10")  # the datasets torchvision has a class for, i.e. a peer


def _write_idx(path: Path, array, magic: int) -> None:
    if not path.exists():
        header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
        path.write_bytes(header + array.tobytes())


def peer_dataset(cfg, raw, root: Path):
    """The torchvision dataset class a user would reach for, on the official file layout, normalised
    with the dataset config's mean and std."""
    import torchvision.datasets as tvd
    import torchvision.transforms as T

    name = cfg.dataset.name
    transform = T.Compose([T.ToTensor(), T.Normalize(list(cfg.dataset.mean), list(cfg.dataset.std))])
    if name == "mnist":
        raw_dir = root / "MNIST" / "raw"
        raw_dir.mkdir(parents=True, exist_ok=True)
        # torchvision's class reads decompressed IDX files in its own layout
        for split, x, y in (("train", raw.train_x, raw.train_y), ("t10k", raw.test_x, raw.test_y)):
            _write_idx(raw_dir / f"{split}-images-idx3-ubyte", x[:, 0].numpy(), 2051)
            _write_idx(raw_dir / f"{split}-labels-idx1-ubyte", y.to(torch.uint8).numpy(), 2049)
        return tvd.MNIST(str(root), train=True, transform=transform, download=False)

    class LocalCIFAR10(tvd.CIFAR10):
        def _check_integrity(self) -> bool:  # our batches are re-made from the JPEG copy: no official md5
            return True

        def _load_meta(self) -> None:  # the same, without the md5 check of batches.meta
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as fh:
                self.classes = pickle.load(fh)[self.meta["key"]]
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    batches = root / LocalCIFAR10.base_folder
    if not (batches / "data_batch_1").exists():
        batches.mkdir(parents=True, exist_ok=True)
        images = raw.train_x.permute(0, 2, 3, 1).reshape(len(raw.train_x), -1).numpy()
        for i, chunk in enumerate(range(0, len(images), 10000), start=1):
            with open(batches / f"data_batch_{i}", "wb") as fh:
                pickle.dump({"data": images[chunk:chunk + 10000].reshape(-1, 3072),
                             "labels": raw.train_y[chunk:chunk + 10000].tolist()}, fh)
        with open(batches / "test_batch", "wb") as fh:
            pickle.dump({"data": images[:10].reshape(-1, 3072), "labels": raw.train_y[:10].tolist()}, fh)
        with open(batches / "batches.meta", "wb") as fh:
            pickle.dump({"label_names": raw.classes}, fh)
    return LocalCIFAR10(str(root), train=True, transform=transform, download=False)


def bench_case(data: str, model_name: str, batch_size: int, raw, peer_root: Path, steps: int, reps: int,
               workers: list[int], device: torch.device, arch: str = "lenet",
               clock: Callable[[], float] = time.perf_counter) -> dict:
    channels = raw.train_x.shape[1]
    cfg = job_config(model_name, data, arch)
    n = steps * batch_size
    runs: dict[str, Callable[[], int]] = {}

    limit_model, limit_optimizer = set_up(cfg, channels, device)
    xb, yb = next(iter(project_batches(cfg, raw, batch_size, batch_size, device, shuffle=False)))

    def limit() -> int:
        for _ in range(steps):
            step(limit_model, limit_optimizer, xb, yb)
        return n

    runs["limit"] = limit

    model, optimizer = set_up(cfg, channels, device)
    batches = project_batches(cfg, raw, n, batch_size, device)
    runs["project"] = lambda: (train_epoch(model, batches, optimizer, progress=False), n)[1]

    def data_path() -> int:  # the project's batches alone: shuffle, slice, normalise, no model
        for x, _ in batches:
            x.sum()  # touch the batch so lazy work cannot hide
        sync(device)
        return n

    runs["data_path"] = data_path

    dataset = peer_dataset(cfg, raw, peer_root)
    loaders = []
    peers = [(f"peer_w{w}", w, False) for w in workers] + [("peer_w0_same_settings", 0, True)]
    for name, w, as_train_py in peers:
        peer_model, peer_optimizer = set_up(cfg, channels, device, as_train_py)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=w,
                                             persistent_workers=w > 0, pin_memory=device.type == "cuda")
        loaders.append(loader)

        def peer(loader=loader, peer_model=peer_model, peer_optimizer=peer_optimizer) -> int:
            seen = 0
            for i, (xp, yp) in enumerate(loader):
                if i == steps:
                    break
                step(peer_model, peer_optimizer, xp.to(device, non_blocking=True), yp.to(device, non_blocking=True))
                seen += len(yp)
            return seen

        runs[name] = peer

    results, faults = interleaved(runs, reps, device, clock=clock)
    del loaders

    summary = {name: {**figures(r), "page_faults_per_step": statistics.median(faults[name]) * batch_size}
               for name, r in results.items()}
    best_peer = max((f"peer_w{w}" for w in workers), key=lambda name: summary[name]["median"])
    project = results["project"]
    ratios = {
        "vs_peer": paired_ratio(project, results[best_peer]),
        "vs_peer_same_settings": paired_ratio(project, results["peer_w0_same_settings"]),
        "vs_limit": paired_ratio(project, results["limit"]),
        # the project loop's time its data path takes, timed alone: much less noisy than
        # project/limit, two runs of nearly the same work that each vary with the machine's speed
        "data_path_share": paired_ratio(project, results["data_path"]),
    }
    return {
        "data": data, "arch": arch, "model": model_name, "batch_size": batch_size, "steps": steps, "reps": reps,
        "images_per_s": summary, "best_peer": best_peer, "ratios": ratios,
        "ratio_vs_peer": ratios["vs_peer"]["median"],
        "ratio_vs_peer_same_settings": ratios["vs_peer_same_settings"]["median"],
        "ratio_vs_limit": ratios["vs_limit"]["median"],
        "data_path_share": ratios["data_path_share"]["median"],
    }
