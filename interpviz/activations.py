"""Activations over images: a layer's feature maps for a photo, and dataset examples (top-activating images)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from interpviz.data import ImageSet
from interpviz.hooks import forward_to
from interpviz.images import ImageLike
from interpviz.models.zoo import LoadedModel
from interpviz.speed import inference_batch_size


@torch.no_grad()
def feature_maps(model: LoadedModel, image: ImageLike, layer: str) -> torch.Tensor:
    """The layer's output for one image, preprocessed as the model expects: (C, H, W) or (C,), on the CPU."""
    model.layer(layer)
    batch = model.preprocess(image, model.device)
    return forward_to(model, batch, layer, detach=True)[layer][0].cpu()


@dataclass(frozen=True)
class ChannelMaxima:
    """For each image and channel of a layer: the largest activation and where in the map it occurred."""

    layer: str
    values: torch.Tensor
    positions: torch.Tensor
    map_size: tuple[int, int]

    def top(self, channel: int, k: int = 9, largest: bool = True) -> tuple[list[int], list[float]]:
        """Indices and maxima of the k images that excite ``channel`` most (or least, with largest=False)."""
        if not 0 <= channel < self.values.shape[1]:
            raise IndexError(
                f"channel {channel} is out of range for layer {self.layer!r}: use 0 .. {self.values.shape[1] - 1}"
            )
        k = min(k, self.values.shape[0])
        values, indices = self.values[:, channel].topk(k, largest=largest)
        return indices.tolist(), values.tolist()


@torch.no_grad()
def channel_maxima(
    model: LoadedModel, images: ImageSet, layer: str, batch_size: int | None = None, progress: bool = True
) -> ChannelMaxima:
    """Run every image through the model as far as ``layer`` and keep each channel's spatial maximum.

    Memory stays at (images x channels): feature maps are reduced batch by batch and never stored.
    Images are fed at their own size (normalised, not resized), since convolutional layers take any size.
    ``batch_size=None`` picks one with ``interpviz.speed.inference_batch_size``.
    """
    model.layer(layer)
    if batch_size is None:
        batch_size = inference_batch_size(model, images.images.shape[1:3])
    all_values, all_positions = [], []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc=f"activations of {layer}", disable=not progress, leave=False):
        indices = range(start, min(start + batch_size, len(images)))
        batch = model.preprocess.normalize(images.to_tensor(indices)).to(model.device)
        output = forward_to(model, batch, layer, detach=True)[layer]
        flat = output.flatten(2) if output.ndim == 4 else output.unsqueeze(2)
        values, positions = flat.max(dim=2)
        all_values.append(values.cpu())
        all_positions.append(positions.cpu())
        map_size = tuple(output.shape[2:]) if output.ndim == 4 else (1, 1)
    return ChannelMaxima(
        layer=layer,
        values=torch.cat(all_values),
        positions=torch.cat(all_positions),
        map_size=map_size,
    )
