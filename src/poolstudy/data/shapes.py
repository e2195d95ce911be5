"""A small synthetic dataset made entirely by code: filled shapes at random positions.

No files, no download, the same images on every machine (fixed seed): examples and tests
run anywhere. Each class is a shape whose position and size vary, so a classifier has to
recognise it wherever it lies, which is exactly what the invariance probes look at.
"""

from __future__ import annotations

from pathlib import Path

import torch

from poolstudy.data.raw import Located, RawDataset

SHAPE_CLASSES = ["square", "disk", "triangle", "cross"]
IMAGE_SIZE = 28
TRAIN_SIZE, TEST_SIZE = 6000, 1000
SEED = 0
_MIN_HALF, _MAX_HALF = 4, 7  # half-extent of a shape in pixels


def _masks(kind: torch.Tensor, half: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Boolean (N, H, W) masks; dy, dx are each pixel's offset from the shape's centre."""
    h = half.view(-1, 1, 1).float()
    ay, ax = dy.abs(), dx.abs()
    square = torch.maximum(ay, ax) <= h
    disk = dy**2 + dx**2 <= h**2
    triangle = (ay <= h) & (2 * ax <= dy + h)  # apex up, base on the bottom edge
    arm = torch.clamp(torch.div(h, 3, rounding_mode="floor"), min=1)
    cross = ((ay <= h) & (ax <= arm)) | ((ax <= h) & (ay <= arm))
    return torch.stack([square, disk, triangle, cross], dim=1)[torch.arange(len(kind)), kind]


def make_shapes(train_size: int = TRAIN_SIZE, test_size: int = TEST_SIZE, size: int = IMAGE_SIZE,
                seed: int = SEED) -> RawDataset:
    """uint8 (N, 1, size, size) images of bright shapes on a dim noisy background, classes balanced."""
    gen = torch.Generator().manual_seed(seed)
    n = train_size + test_size
    labels = (torch.arange(n) % len(SHAPE_CLASSES))[torch.randperm(n, generator=gen)]
    half = torch.randint(_MIN_HALF, _MAX_HALF + 1, (n,), generator=gen)
    # centres anywhere that keeps the whole shape inside the image
    span = (size - 2 * half).float()
    cy = half + (torch.rand(n, generator=gen) * span).long()
    cx = half + (torch.rand(n, generator=gen) * span).long()
    grid = torch.arange(size, dtype=torch.float32)
    dy = grid.view(1, -1, 1) - cy.view(-1, 1, 1).float()
    dx = grid.view(1, 1, -1) - cx.view(-1, 1, 1).float()
    mask = _masks(labels, half, dy, dx)
    background = torch.randint(0, 50, (n, size, size), generator=gen, dtype=torch.uint8)
    brightness = torch.randint(160, 256, (n, 1, 1), generator=gen).to(torch.uint8)
    images = torch.where(mask, brightness, background).unsqueeze(1)
    return RawDataset(
        train_x=images[:train_size].contiguous(), train_y=labels[:train_size].contiguous(),
        test_x=images[train_size:].contiguous(), test_y=labels[train_size:].contiguous(),
        classes=list(SHAPE_CLASSES),
        source=f"synthetic shapes ({', '.join(SHAPE_CLASSES)}; {size}x{size}, seed {seed}), generated in memory",
    )


def locate(name: str, data_dir: Path, cache_dir: Path, download: bool | str, root: str | None, color_mode: str,
           hint: str) -> Located:
    """The shapes are made by code in milliseconds, the same on every machine: no files, nothing to cache."""
    return Located([], make_shapes, "", cache=False)
