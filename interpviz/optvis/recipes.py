"""Ready-made feature visualizations: channel grids, positive/negative pairs, random directions, diverse
batches, class visualizations, DeepDream on a photo, and adversarial examples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from interpviz.hooks import forward_to
from interpviz.images import ImageLike
from interpviz.models.zoo import LoadedModel
from interpviz.optvis.objectives import (
    StepContext,
    channel_objective,
    class_logit,
    diversity_objective,
    layer_objective,
    random_direction_objective,
)
from interpviz.optvis.params import PixelImage
from interpviz.optvis.render import RenderResult, frozen_model, render
from interpviz.optvis.transforms import Jitter


def channel_grid(model: LoadedModel, layer: str, channels: Sequence[int], **render_options) -> RenderResult:
    """One image per channel, all optimized together as one batch (image i maximizes channels[i])."""
    info = model.layer(layer)
    objective = sum(channel_objective(layer, info.check_channel(c)).on(i) for i, c in enumerate(channels))
    return render(model, objective, batch=len(channels), **render_options)


def positive_and_negative(model: LoadedModel, layer: str, channel: int, **render_options) -> RenderResult:
    """Image 0 maximizes the channel, image 1 minimizes it (maximizes its negation)."""
    model.layer(layer).check_channel(channel)
    unit = channel_objective(layer, channel)
    return render(model, unit.on(0) + (-unit).on(1), batch=2, **render_options)


def random_directions(model: LoadedModel, layer: str, count: int = 4, seed: int = 0, **render_options) -> RenderResult:
    """Images for ``count`` random directions of a layer (seeds seed, seed+1, ...)."""
    channels = model.layer(layer).channels
    objective = sum(random_direction_objective(layer, channels, seed + i).on(i) for i in range(count))
    return render(model, objective, batch=count, **render_options)


def diverse_batch(model: LoadedModel, layer: str, channel: int, count: int = 4, diversity: float = 30.0,
                  diversity_layer: str | None = None, **render_options) -> RenderResult:
    """``count`` images that all maximize one channel but are pushed apart by a diversity term."""
    model.layer(layer).check_channel(channel)
    objective = channel_objective(layer, channel) + diversity * diversity_objective(diversity_layer or layer)
    return render(model, objective, batch=count, **render_options)


def class_visualization(model: LoadedModel, class_index: int, **render_options) -> RenderResult:
    """An image that maximizes a class logit (before softmax)."""
    model.layer("logits").check_channel(class_index)
    return render(model, class_logit(class_index), **render_options)


def deepdream(model: LoadedModel, photo: ImageLike, layer: str, steps: int = 40, lr: float = 0.01,
              **render_options) -> RenderResult:
    """DeepDream: start from a photo and amplify whatever a layer already sees in it."""
    model.layer(layer)
    start = model.preprocess.denormalize(model.preprocess(photo))
    image = PixelImage(start=start, decorrelate=False)
    render_options.setdefault("transforms", (Jitter(4),))
    return render(model, layer_objective(layer), image, steps=steps, lr=lr, **render_options)


@dataclass
class AdversarialResult:
    """A photo, its adversarial twin, the largest pixel change, and the top-5 predictions of both."""

    original: torch.Tensor
    adversarial: torch.Tensor
    linf: float
    before: list[tuple[str, float]]
    after: list[tuple[str, float]]


def _top5(model: LoadedModel, images01: torch.Tensor) -> list[tuple[str, float]]:
    with torch.no_grad():
        probabilities = model.module(model.preprocess.normalize(images01.to(model.device))).softmax(dim=1)[0]
    values, indices = probabilities.topk(5)
    return [(model.class_names[i], float(p)) for p, i in zip(values.tolist(), indices.tolist())]


def adversarial_example(model: LoadedModel, photo: ImageLike, target_class: int, epsilon: float = 2 / 255,
                        steps: int = 20, step_size: float | None = None) -> AdversarialResult:
    """Projected gradient ascent on a target class logit, with every pixel within ``epsilon`` of the photo.

    The change is at most ``epsilon`` per pixel (2/255 by default: invisible), yet the prediction flips.
    """
    model.layer("logits").check_channel(target_class)
    original = model.preprocess.denormalize(model.preprocess(photo)).to(model.device)
    step_size = step_size if step_size is not None else 2.5 * epsilon / max(steps, 1)
    delta = torch.zeros_like(original, requires_grad=True)
    objective = class_logit(target_class)
    with frozen_model(model.module):
        for _ in range(steps):
            images = (original + delta).clamp(0, 1)
            activations = forward_to(model, model.preprocess.normalize(images), "logits")
            score = objective(StepContext(activations, images)).sum()
            (gradient,) = torch.autograd.grad(score, delta)
            with torch.no_grad():
                delta += step_size * gradient.sign()
                delta.clamp_(-epsilon, epsilon)
    adversarial = (original + delta.detach()).clamp(0, 1)
    return AdversarialResult(
        original=original[0].cpu(),
        adversarial=adversarial[0].cpu(),
        linf=float((adversarial - original).abs().max()),
        before=_top5(model, original),
        after=_top5(model, adversarial),
    )
