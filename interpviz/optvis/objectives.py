"""Objectives for feature visualization. Every objective is maximized; they compose with +, -, and scalar *.

An objective maps what one optimization step saw (the layer activations it asked for and the images
before transforms) to one score per image of the batch, shape (batch,). The optimizer maximizes the sum.
``objective.on(i)`` binds it to image i alone, so ``sum(channel_objective(layer, c).on(i) for i, c in ...)``
optimizes a grid of channels as a single batch. Regularizers are objectives too: they return minus a
penalty, so adding ``0.1 * total_variation()`` to a unit objective trades activation for smoothness.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class StepContext:
    """What an objective can read at one step: activations by layer name and the images in [0, 1]."""

    activations: dict[str, torch.Tensor]
    images: torch.Tensor


ScoreFunction = Callable[[StepContext], torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """A per-image score to maximize, the layers it needs, and a readable description."""

    score: ScoreFunction
    layers: frozenset[str]
    description: str

    def __call__(self, context: StepContext) -> torch.Tensor:
        """Scores of every image in the batch, shape (batch,)."""
        return self.score(context)

    def __add__(self, other: "Objective | float") -> "Objective":
        if isinstance(other, (int, float)):
            if other == 0:
                return self
            return NotImplemented
        return Objective(lambda c: self(c) + other(c), self.layers | other.layers, f"{self.description} + {other.description}")

    __radd__ = __add__

    def __neg__(self) -> "Objective":
        return Objective(lambda c: -self(c), self.layers, f"-({self.description})")

    def __sub__(self, other: "Objective") -> "Objective":
        return self + (-other)

    def __mul__(self, factor: float) -> "Objective":
        if not isinstance(factor, (int, float)):
            return NotImplemented
        return Objective(lambda c: factor * self(c), self.layers, f"{factor:g} * ({self.description})")

    __rmul__ = __mul__

    def on(self, index: int) -> "Objective":
        """The same objective counted only for image ``index`` of the batch (zero for the others)."""

        def score(context: StepContext) -> torch.Tensor:
            values = self(context)
            if not 0 <= index < values.shape[0]:
                raise IndexError(f"objective bound to image {index}, but the batch has {values.shape[0]} images")
            mask = torch.zeros_like(values)
            mask[index] = 1
            return values * mask

        return Objective(score, self.layers, f"{self.description} on image {index}")


def _activation(context: StepContext, layer: str) -> torch.Tensor:
    return context.activations[layer]


def _require_int(value, what: str) -> int:
    """``value`` if it is an int (numpy and torch integers included), else a TypeError saying what is allowed."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r}")
    return int(value)


def _check_channel(activation: torch.Tensor, layer: str, channel: int) -> None:
    if not 0 <= channel < activation.shape[1]:
        raise IndexError(f"channel {channel} is out of range for layer {layer!r}: use 0 .. {activation.shape[1] - 1}")


def neuron_objective(layer: str, channel: int, x: int | None = None, y: int | None = None) -> Objective:
    """One channel at one position (default: the centre of the feature map): z[channel, y, x]."""
    channel = _require_int(channel, "channel")
    x = None if x is None else _require_int(x, "x")
    y = None if y is None else _require_int(y, "y")

    def score(context: StepContext) -> torch.Tensor:
        activation = _activation(context, layer)
        _check_channel(activation, layer, channel)
        if activation.ndim == 2:
            if x is not None or y is not None:
                raise ValueError(f"layer {layer!r} has no spatial positions (its output is {tuple(activation.shape[1:])} "
                                 "per image), so x and y cannot be used; leave them out")
            return activation[:, channel]
        height, width = activation.shape[2:]
        row = height // 2 if y is None else y
        col = width // 2 if x is None else x
        if not (0 <= row < height and 0 <= col < width):
            raise IndexError(f"position (x={col}, y={row}) is outside the {width}x{height} map of {layer!r}")
        return activation[:, channel, row, col]

    where = "centre" if x is None and y is None else f"x={x}, y={y}"
    return Objective(score, frozenset([layer]), f"neuron {layer}[{channel}] at {where}")


def channel_objective(layer: str, channel: int) -> Objective:
    """One channel averaged over all positions: mean over (y, x) of z[channel]."""
    channel = _require_int(channel, "channel")

    def score(context: StepContext) -> torch.Tensor:
        activation = _activation(context, layer)
        _check_channel(activation, layer, channel)
        values = activation[:, channel]
        return values.flatten(1).mean(dim=1) if values.ndim > 1 else values

    return Objective(score, frozenset([layer]), f"channel {layer}[{channel}]")


def layer_objective(layer: str) -> Objective:
    """The whole layer, as in DeepDream: the mean of the squared activations."""

    def score(context: StepContext) -> torch.Tensor:
        return _activation(context, layer).pow(2).flatten(1).mean(dim=1)

    return Objective(score, frozenset([layer]), f"layer {layer} (mean of squares)")


def class_logit(class_index: int, layer: str = "logits") -> Objective:
    """A class logit before softmax (the usual target: it cannot be raised by lowering other classes)."""

    def score(context: StepContext) -> torch.Tensor:
        logits = _activation(context, layer)
        _check_channel(logits, layer, class_index)
        return logits[:, class_index]

    return Objective(score, frozenset([layer]), f"logit of class {class_index}")


def class_probability(class_index: int, layer: str = "logits") -> Objective:
    """A class probability after softmax; it rises also when the other logits fall."""

    def score(context: StepContext) -> torch.Tensor:
        logits = _activation(context, layer)
        _check_channel(logits, layer, class_index)
        return logits.softmax(dim=1)[:, class_index]

    return Objective(score, frozenset([layer]), f"probability of class {class_index}")


def direction_objective(layer: str, vector: torch.Tensor | Sequence[float]) -> Objective:
    """A direction in a layer's channel space: the dot product of z with the unit vector, averaged over positions."""
    unit = torch.as_tensor(vector, dtype=torch.float32)
    if unit.ndim != 1 or unit.norm() == 0:
        raise ValueError("a direction must be a non-zero vector with one entry per channel")
    unit = unit / unit.norm()

    def score(context: StepContext) -> torch.Tensor:
        activation = _activation(context, layer)
        if activation.shape[1] != unit.numel():
            raise ValueError(f"direction has {unit.numel()} entries but layer {layer!r} has {activation.shape[1]} channels")
        weights = unit.to(activation.device, activation.dtype)
        projected = torch.einsum("bc...,c->b...", activation, weights)
        return projected.flatten(1).mean(dim=1) if projected.ndim > 1 else projected

    return Objective(score, frozenset([layer]), f"direction in {layer}")


def random_vector(channels: int, seed: int = 0) -> torch.Tensor:
    """A unit vector with ``channels`` entries drawn from a seeded Gaussian: the same seed, the same vector."""
    generator = torch.Generator().manual_seed(seed)
    vector = torch.randn(channels, generator=generator)
    return vector / vector.norm()


def random_direction_objective(layer: str, channels: int, seed: int = 0) -> Objective:
    """A random direction in a layer with ``channels`` channels, drawn from ``seed``."""
    objective = direction_objective(layer, random_vector(channels, seed))
    return Objective(objective.score, objective.layers, f"random direction {seed} in {layer}")


def diversity_objective(layer: str) -> Objective:
    """Rewards images of a batch for differing in style: minus the mean cosine similarity of their Gram matrices."""

    def score(context: StepContext) -> torch.Tensor:
        activation = _activation(context, layer)
        batch = activation.shape[0]
        if batch < 2:
            raise ValueError("diversity needs a batch of at least 2 images")
        flat = activation.flatten(2)
        grams = F.normalize(torch.bmm(flat, flat.transpose(1, 2)).flatten(1), dim=1)
        similarity = grams @ grams.T
        off_diagonal = similarity.sum(dim=1) - similarity.diagonal()
        return -off_diagonal / (batch - 1)

    return Objective(score, frozenset([layer]), f"diversity of {layer}")


def _per_image_mean(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).mean(dim=1)


def l1_penalty(constant: float = 0.5) -> Objective:
    """Minus the mean absolute distance of the pixels from ``constant`` (grey): keeps the image plain."""
    return Objective(
        lambda c: -_per_image_mean((c.images - constant).abs()), frozenset(), f"L1 penalty around {constant:g}"
    )


def total_variation() -> Objective:
    """Minus the mean absolute difference between neighbouring pixels: suppresses speckle."""

    def score(context: StepContext) -> torch.Tensor:
        images = context.images
        across = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(dim=1)
        down = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(dim=1)
        return -(across + down)

    return Objective(score, frozenset(), "total variation penalty")


def _box_blur(images: torch.Tensor, radius: int) -> torch.Tensor:
    size = 2 * radius + 1
    padded = F.pad(images, [radius] * 4, mode="replicate")
    return F.avg_pool2d(padded, size, stride=1)


def blur_penalty(radius: int = 1) -> Objective:
    """Minus the squared distance to a (fixed) blurred copy of the image: pulls it towards its own blur."""

    def score(context: StepContext) -> torch.Tensor:
        target = _box_blur(context.images, radius).detach()
        return -_per_image_mean((context.images - target).pow(2))

    return Objective(score, frozenset(), f"blur penalty (radius {radius})")


def frequency_penalty(radius: int = 1) -> Objective:
    """Minus the variance of each pixel's neighbourhood, averaged: penalizes high spatial frequencies."""

    def score(context: StepContext) -> torch.Tensor:
        images = context.images
        mean = _box_blur(images, radius)
        variance = (_box_blur(images.pow(2), radius) - mean.pow(2)).clamp_min(0)
        return -_per_image_mean(variance)

    return Objective(score, frozenset(), f"frequency penalty (neighbourhood variance, radius {radius})")
