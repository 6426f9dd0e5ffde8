"""Dissect many networks, or many directions of one layer, in one pass over the images.

Network Dissection labels every unit on its own: its threshold, its masks and its IoUs depend on that unit's
activations only. So the units of several networks (or several rotated bases of one layer) can be put side by
side as the channels of one layer and dissected together: each unit gets exactly what a dissection of its own
network would give (the exact mode gives identical thresholds; the histogram mode too, when the batches are
the same). What is shared is the work that does not depend on the units: reading and decoding every image and
every concept mask, which is most of the time of a dissection of a small layer. Measured on 300 concept
images on 2 CPU cores shared with other jobs, conv5 of a random-weight SmallCNN: its 128 units took 33 s, and
1,024 units read side by side 40 s. Rotated directions cost more per direction (they reach many more images
than sparse ReLU units): 1,024 of them took 82 s, against 30 s for the 128 units, so a sweep of 8 rotated bases
costs about as much as three plain dissections instead of eight.

- ``SideBySide``: several networks that read the same images; its child ``joined.<layer>`` outputs their
  outputs at ``layer``, concatenated along the channels.
- ``ReadDirections``: a layer, unchanged, with a child ``directions`` that reads its output along the rows of a
  matrix (each row a direction, e.g. a rotated unit); the network's own computation is not changed.
- ``split_units``: one ``LayerDissection`` of all the units, cut back into one per network or direction set.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import torch
from torch import nn

from interpviz.broden import BrodenDataset
from interpviz.dissect import DissectionSettings, LayerDissection, dissect
from interpviz.hooks import forward_to
from interpviz.models.zoo import LoadedModel, wrap
from interpviz.rotation import ChannelRotation, copy_with_wrapped

UNIT_FIELDS = ("thresholds", "threshold_error", "iou", "intersection", "unit_area", "top_images", "top_values",
               "above_minimum", "mask_fraction")
"""The fields of a LayerDissection indexed by unit first."""


def _key(layer: str) -> str:
    return layer.replace(".", "__")


class SideBySide(nn.Module):
    """Networks run on the same input; child ``joined.<layer>`` gets their ``layer`` outputs side by side.

    Its output is nothing useful (the concatenated last layer): it exists to be dissected at ``joined.*``.
    """

    def __init__(self, networks: Mapping[str, nn.Module], layers: list[str]):
        super().__init__()
        self.names, self.layers = list(networks), list(layers)
        self.networks = nn.ModuleList(networks.values())
        self.joined = nn.ModuleDict({_key(layer): nn.Identity() for layer in self.layers})

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        outputs = [forward_to(network, images, self.layers, detach=True) for network in self.networks]
        joined = {layer: self.joined[_key(layer)](torch.cat([output[layer] for output in outputs], dim=1))
                  for layer in self.layers}
        return joined[self.layers[-1]]


def split_units(result: LayerDissection, sizes: Mapping[str, int], layer: str | None = None) -> dict[str, LayerDissection]:
    """Cut a dissection of side-by-side units into consecutive groups of ``sizes`` units, named by its keys."""
    if sum(sizes.values()) != result.units:
        raise ValueError(f"the groups have {sum(sizes.values())} units in all, the dissection {result.units}")
    groups, start = {}, 0
    for name, size in sizes.items():
        part = {field: getattr(result, field)[start : start + size] for field in UNIT_FIELDS}
        groups[name] = dataclasses.replace(result, layer=layer or result.layer, **part)
        start += size
    return groups


@torch.no_grad()
def dissect_side_by_side(networks: Mapping[str, nn.Module | LoadedModel], dataset: BrodenDataset,
                         layers: str | list[str], settings: DissectionSettings = DissectionSettings(),
                         limit: int | None = None, progress: bool = True) -> dict[str, dict[str, LayerDissection]]:
    """{network: {layer: dissection}}, as ``dissect`` of each network would give, in one pass over the images.

    The networks must read images alike (the same preprocessing; plain modules read [0, 1] images) and give
    each layer at one spatial size.
    """
    if not networks:
        raise ValueError("no networks to dissect")
    layers = [layers] if isinstance(layers, str) else list(layers)
    loaded = {name: net if isinstance(net, LoadedModel) else wrap(net, name) for name, net in networks.items()}
    first = next(iter(loaded.values()))
    for name, model in loaded.items():
        if model.preprocess != first.preprocess:
            raise ValueError(f"{name!r} reads images differently from {first.name!r}; dissect them separately")
        for layer in layers:
            model.layer(layer)
    paths = {layer: first.layer(layer).name for layer in layers}
    modules = {name: model.module for name, model in loaded.items()}
    sizes = {layer: {name: model.layer(layer).output_shape[0] for name, model in loaded.items()} for layer in layers}
    side = SideBySide(modules, list(paths.values()))
    joined = wrap(side, "side by side", preprocess=first.preprocess)
    joined_names = {layer: f"joined.{_key(paths[layer])}" for layer in layers}
    results = dissect(joined, dataset, list(joined_names.values()), settings, limit=limit, progress=progress)
    out: dict[str, dict[str, LayerDissection]] = {name: {} for name in loaded}
    for layer in layers:
        for name, part in split_units(results[joined_names[layer]], sizes[layer], layer).items():
            out[name][layer] = part
    return out


class ReadDirections(nn.Module):
    """``layer`` unchanged, plus a child ``directions`` that reads its output along the rows of ``matrix``."""

    def __init__(self, layer: nn.Module, matrix: torch.Tensor):
        super().__init__()
        self.layer = layer
        self.directions = ChannelRotation(matrix)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        output = self.layer(*inputs)
        self.directions(output)
        return output


def with_directions(model: LoadedModel, layer: str, matrix: torch.Tensor) -> tuple[LoadedModel, str]:
    """A copy of ``model`` whose ``layer`` also exposes its output along the rows of ``matrix``; and the name
    of that new layer. The copy computes what the model computes."""
    path = model.layer(layer).name
    directions = matrix.to(model.device)
    module = copy_with_wrapped(model.module, path, lambda original: ReadDirections(original, directions))
    return dataclasses.replace(model, module=module, layer_aliases={}), f"{path}.directions"


@torch.no_grad()
def dissect_directions(model: LoadedModel, dataset: BrodenDataset, layer: str, directions: Mapping[str, torch.Tensor],
                       settings: DissectionSettings = DissectionSettings(), limit: int | None = None,
                       progress: bool = True) -> dict[str, LayerDissection]:
    """{name: dissection of ``layer`` read along the rows of that matrix}, all in one pass over the images.

    Each matrix has one row per direction and one column per channel of the layer: a rotation Q gives the
    rotated basis, -Q the other tail of the same directions, the identity the layer's own units.
    """
    if not directions:
        raise ValueError("no directions to dissect")
    channels = model.layer(layer).output_shape[0]
    for name, matrix in directions.items():
        if matrix.ndim != 2 or matrix.shape[1] != channels:
            raise ValueError(f"directions {name!r} must be a matrix with {channels} columns (the channels of "
                             f"{layer}), got shape {tuple(matrix.shape)}")
    stacked = torch.cat([matrix.to(torch.float64) for matrix in directions.values()])
    reading, name = with_directions(model, layer, stacked)
    result = dissect(reading, dataset, name, settings, limit=limit, progress=progress)[name]
    return split_units(result, {key: matrix.shape[0] for key, matrix in directions.items()}, layer)
