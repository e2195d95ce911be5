"""Integer translations of image batches, vectorised: one gather per batch, no per-image loops.

Convention: a shift (dy, dx) moves the pixel at (row, col) to (row + dy, col + dx); positive
dy is down, positive dx is right. The pixels uncovered at the border come from the padding
mode: ``zero`` (black), ``reflect`` (mirrored about the edge pixel, which is not repeated, as
in numpy's and torch's "reflect") or ``circular`` (what leaves one side re-enters the other).
"""

from __future__ import annotations

import torch

from poolstudy.errors import PoolStudyError

PADDING_MODES = ("zero", "reflect", "circular")

Shifts = tuple[torch.Tensor, torch.Tensor]  # (dy, dx), each int64 of shape (N,)


def check_shift(key: str, shift: int, image_shape: tuple[int, ...]) -> None:
    """A shift must leave part of the image in view; ``key`` names the config key at fault."""
    height, width = image_shape[-2:]
    limit = min(height, width) - 1
    if shift > limit:
        raise PoolStudyError(
            f"{key} = {shift} is too large for {height}x{width} images: a shift must be at most "
            f"{limit} pixels (one less than the smaller side)."
        )


def _check_padding(padding: str) -> None:
    if padding not in PADDING_MODES:
        raise PoolStudyError(f"padding mode {padding!r} is not valid: it must be one of {', '.join(PADDING_MODES)}.")


def _source_index(index: torch.Tensor, size: int, padding: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Map source coordinates that may lie outside [0, size) back inside; for zero padding also
    return which of them were inside (the rest become 0)."""
    if padding == "circular":
        return index.remainder(size), None
    if padding == "reflect":
        if size == 1:
            return torch.zeros_like(index), None
        period = 2 * (size - 1)
        folded = index.remainder(period)
        return torch.where(folded < size, folded, period - folded), None
    inside = (index >= 0) & (index < size)
    return index.clamp(0, size - 1), inside


def shift_images(images: torch.Tensor, dy: torch.Tensor | int, dx: torch.Tensor | int, padding: str = "zero") -> torch.Tensor:
    """Translate each image of ``images`` (N, C, H, W), any dtype, by its own (dy[i], dx[i])."""
    _check_padding(padding)
    n, channels, height, width = images.shape
    device = images.device
    dy = torch.as_tensor(dy, dtype=torch.long, device=device).expand(n)
    dx = torch.as_tensor(dx, dtype=torch.long, device=device).expand(n)
    rows, rows_inside = _source_index(torch.arange(height, device=device) - dy[:, None], height, padding)
    cols, cols_inside = _source_index(torch.arange(width, device=device) - dx[:, None], width, padding)
    flat_index = (rows[:, :, None] * width + cols[:, None, :]).view(n, 1, height * width)
    shifted = images.reshape(n, channels, height * width).gather(2, flat_index.expand(n, channels, -1))
    shifted = shifted.view(n, channels, height, width)
    if rows_inside is not None:
        inside = (rows_inside[:, :, None] & cols_inside[:, None, :]).unsqueeze(1)
        shifted = shifted * inside.to(shifted.dtype)
    return shifted


def ring_offsets(distance: int) -> torch.Tensor:
    """All (dy, dx) at Chebyshev distance ``distance`` (``max(|dy|, |dx|) == distance``), as (K, 2):
    every direction, axial and diagonal; [(0, 0)] for distance 0."""
    span = torch.arange(-distance, distance + 1)
    grid = torch.cartesian_prod(span, span)
    return grid[grid.abs().amax(dim=1) == distance]


def shifts_at_distance(n: int, distance: int, generator: torch.Generator) -> Shifts:
    """One shift per image, all at ``distance`` pixels, every direction of the ring used equally
    often (to within one image) and assigned to images at random."""
    ring = ring_offsets(distance)
    choice = ring[torch.randperm(n, generator=generator) % len(ring)]
    return choice[:, 0].contiguous(), choice[:, 1].contiguous()


def uniform_shifts(n: int, max_shift: int, generator: torch.Generator) -> Shifts:
    """Independent shifts drawn uniformly from [-max_shift, max_shift] in each axis."""
    drawn = torch.randint(-max_shift, max_shift + 1, (2, n), generator=generator)
    return drawn[0], drawn[1]


def translate_test_images(images: torch.Tensor, distance: int, padding: str, seed: int) -> torch.Tensor:
    """The controlled shifted test set: every image moved by exactly ``distance`` pixels in a
    direction fixed by ``seed`` (directions balanced), computed on the fly from the real data."""
    if distance == 0:
        return images
    dy, dx = shifts_at_distance(len(images), distance, torch.Generator().manual_seed(seed))
    return shift_images(images, dy.to(images.device), dx.to(images.device), padding)
