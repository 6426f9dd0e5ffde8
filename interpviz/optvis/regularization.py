"""One place to switch every regularizer on or off with a strength, for side-by-side comparisons.

``Regularization()`` with all defaults is the unregularized baseline: pixel parameterization, no colour
decorrelation, no transforms, no penalties. Each field turns one remedy on; ``STANDARD_REGULARIZATION`` is
render()'s default (Fourier, decorrelated colours, Lucid's transforms).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interpviz.optvis.objectives import (
    Objective,
    blur_penalty,
    frequency_penalty,
    l1_penalty,
    total_variation,
)
from interpviz.optvis.params import make_image
from interpviz.optvis.prior import DenoisingAutoencoder, LatentImage, denoiser_penalty
from interpviz.optvis.render import RenderResult, evaluate, render
from interpviz.optvis.transforms import (
    STANDARD_TRANSFORMS,
    Jitter,
    Pad,
    RandomRotate,
    RandomScale,
    Transform,
    scale_range,
)


@dataclass(frozen=True)
class Regularization:
    """Strengths of every remedy; zero or False means off."""

    jitter: int = 0
    rotate_degrees: float = 0.0
    scale_spread: float = 0.0
    frequency: float = 0.0
    total_variation: float = 0.0
    l1: float = 0.0
    blur: float = 0.0
    denoiser: float = 0.0
    fourier: bool = False
    decorrelate: bool = False
    latent: bool = False
    standard_transforms: bool = False

    def transforms(self) -> tuple[Transform, ...]:
        """The transforms these settings switch on, in Lucid's order (pad, jitter, scale, rotate)."""
        if self.standard_transforms:
            return STANDARD_TRANSFORMS
        chosen: list[Transform] = []
        if self.jitter or self.scale_spread or self.rotate_degrees:
            chosen.append(Pad(max(self.jitter, 4)))
        if self.jitter:
            chosen.append(Jitter(self.jitter))
        if self.scale_spread:
            chosen.append(RandomScale(scale_range(1 - self.scale_spread, 1 + self.scale_spread, self.scale_spread / 5)))
        if self.rotate_degrees:
            steps = max(1, round(self.rotate_degrees))
            chosen.append(RandomRotate(tuple(self.rotate_degrees * i / steps for i in range(-steps, steps + 1))))
        return tuple(chosen)

    def penalties(self, denoiser: DenoisingAutoencoder | None = None) -> list[Objective]:
        """The penalty objectives these settings switch on, already multiplied by their strengths."""
        terms = [
            (self.frequency, frequency_penalty),
            (self.total_variation, total_variation),
            (self.l1, l1_penalty),
            (self.blur, blur_penalty),
        ]
        chosen = [strength * make() for strength, make in terms if strength]
        if self.denoiser:
            if denoiser is None:
                raise ValueError("denoiser strength is set but no denoiser was given (interpviz.optvis.prior.load_denoiser())")
            chosen.append(self.denoiser * denoiser_penalty(denoiser))
        return chosen

    def label(self) -> str:
        """A short description of what is switched on."""
        parts = [f"{name} {value:g}" for name, value in vars(self).items() if not isinstance(value, bool) and value]
        parts += [name for name, value in vars(self).items() if isinstance(value, bool) and value]
        return ", ".join(parts) or "no regularization"


STANDARD_REGULARIZATION = Regularization(fourier=True, decorrelate=True, standard_transforms=True)


def render_regularized(model, unit: Objective, regularization: Regularization,
                       denoiser: DenoisingAutoencoder | None = None, size: int = 128, seed: int = 0,
                       **render_options) -> RenderResult:
    """Render ``unit`` under ``regularization``; final_scores are the unit's own values, without penalties."""
    generator = torch.Generator().manual_seed(seed)
    if regularization.latent:
        if denoiser is None:
            raise ValueError("latent parameterization needs a denoiser (interpviz.optvis.prior.load_denoiser())")
        image = LatentImage(denoiser, size=size, generator=generator)
    else:
        kind = "fourier" if regularization.fourier else "pixel"
        image = make_image(kind, 1, size, decorrelate=regularization.decorrelate, generator=generator)
    objective = sum(regularization.penalties(denoiser), unit)
    result = render(model, objective, image, size=size, seed=seed, transforms=regularization.transforms(),
                    **render_options)
    result.final_scores = evaluate(model, unit, result.images)
    return result
