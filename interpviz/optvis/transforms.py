"""Random transforms applied to the image at every optimization step, each with an explicit magnitude.

A feature that survives small shifts, scalings and rotations is a feature of the image, not of a few
pixels; without them, optimization finds high-frequency patterns that excite the unit but mean nothing
to a person. Every transform takes the batch and a torch.Generator, so a seeded render repeats exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _choice(options: Sequence[float], generator: torch.Generator) -> float:
    return options[int(torch.randint(len(options), (1,), generator=generator))]


@dataclass(frozen=True)
class Pad:
    """Pad every side by ``pixels`` with a constant ``value`` (0.5 is mid grey)."""

    pixels: int
    value: float = 0.5

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.pad(images, [self.pixels] * 4, value=self.value)


@dataclass(frozen=True)
class Jitter:
    """Shift by up to ``pixels`` in x and y: a random crop that is ``pixels`` smaller in each direction."""

    pixels: int

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.pixels <= 0:
            return images
        dx, dy = (int(v) for v in torch.randint(self.pixels + 1, (2,), generator=generator))
        height, width = images.shape[-2:]
        return images[..., dy : dy + height - self.pixels, dx : dx + width - self.pixels]


@dataclass(frozen=True)
class RandomScale:
    """Resize by a factor drawn from ``factors`` (bilinear, differentiable)."""

    factors: tuple[float, ...]

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        factor = _choice(self.factors, generator)
        if factor == 1:
            return images
        size = [max(1, round(side * factor)) for side in images.shape[-2:]]
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def rotate(images: torch.Tensor, degrees: float, fill: float = 0.5) -> torch.Tensor:
    """Rotate about the centre with bilinear sampling; corners that come from outside are ``fill``.

    Written with affine_grid/grid_sample because torchvision's tensor rotate fills the corners in place,
    which breaks the backward pass.
    """
    angle = torch.tensor(degrees * torch.pi / 180, dtype=images.dtype, device=images.device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros((), dtype=images.dtype, device=images.device)
    matrix = torch.stack([torch.stack([cos, -sin, zero]), torch.stack([sin, cos, zero])])
    grid = F.affine_grid(matrix.expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


@dataclass(frozen=True)
class RandomRotate:
    """Rotate by an angle in degrees drawn from ``angles`` (bilinear, differentiable)."""

    angles: tuple[float, ...]

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        angle = _choice(self.angles, generator)
        return images if angle == 0 else rotate(images, angle)


def compose(transforms: Sequence[Transform]) -> Transform:
    """Apply ``transforms`` in order."""

    def apply(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for transform in transforms:
            images = transform(images, generator)
        return images

    return apply


def scale_range(low: float, high: float, step: float) -> tuple[float, ...]:
    """Factors from ``low`` to ``high`` inclusive in steps of ``step``, e.g. 0.90, 0.92, ..., 1.10."""
    count = round((high - low) / step)
    return tuple(round(low + i * step, 6) for i in range(count + 1))


# Lucid's standard set: pad 12 (grey), jitter 8, scale 0.90-1.10 in 0.02 steps, rotate -10..10 degrees, jitter 4.
STANDARD_TRANSFORMS: tuple[Transform, ...] = (
    Pad(12),
    Jitter(8),
    RandomScale(scale_range(0.90, 1.10, 0.02)),
    RandomRotate(tuple(float(a) for a in range(-10, 11))),
    Jitter(4),
)

NO_TRANSFORMS: tuple[Transform, ...] = ()
