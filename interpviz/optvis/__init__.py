"""Feature visualization: objectives (what to maximize), image parameterizations, transforms, render()."""

from interpviz.optvis.objectives import (
    Objective,
    StepContext,
    blur_penalty,
    channel_objective,
    class_logit,
    class_probability,
    direction_objective,
    diversity_objective,
    frequency_penalty,
    l1_penalty,
    layer_objective,
    neuron_objective,
    random_direction_objective,
    random_vector,
    total_variation,
)
from interpviz.optvis.params import CPPNImage, FourierImage, PixelImage, color_correlation_sqrt, make_image
from interpviz.optvis.render import RenderResult, render
from interpviz.optvis.transforms import NO_TRANSFORMS, STANDARD_TRANSFORMS, Jitter, Pad, RandomRotate, RandomScale

__all__ = [
    "CPPNImage", "FourierImage", "Jitter", "NO_TRANSFORMS", "Objective", "Pad", "PixelImage", "RandomRotate",
    "RandomScale", "RenderResult", "STANDARD_TRANSFORMS", "StepContext", "blur_penalty", "channel_objective",
    "class_logit", "class_probability", "color_correlation_sqrt", "diversity_objective", "direction_objective",
    "frequency_penalty", "l1_penalty", "layer_objective", "make_image", "neuron_objective",
    "random_direction_objective", "random_vector", "render", "total_variation",
]
