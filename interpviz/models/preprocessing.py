"""A model's input preprocessing: resize, centre crop, normalise; also the [0, 1] <-> model-space maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torchvision.transforms import v2 as transforms

from interpviz.images import ImageLike, as_image_list


@dataclass(frozen=True)
class Preprocessing:
    """How images become model input: resize the short side, centre-crop a square, then (x - mean) / std."""

    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: transforms.InterpolationMode = transforms.InterpolationMode.BILINEAR

    def __call__(self, images: ImageLike | Sequence[ImageLike], device: torch.device | str | None = None) -> torch.Tensor:
        """Turn one image or a list of images (PIL RGB or uint8 arrays) into a normalised (N, 3, S, S) batch."""
        pipeline = transforms.Compose(
            [
                transforms.Resize(self.resize_size, interpolation=self.interpolation, antialias=True),
                transforms.CenterCrop(self.input_size),
                transforms.ToDtype(torch.float32, scale=True),
            ]
        )
        crops = [pipeline(torch.tensor(array).permute(2, 0, 1).contiguous()) for array in as_image_list(images)]
        return self.normalize(torch.stack(crops)).to(device or "cpu")

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """Map a (N, 3, H, W) batch with values in [0, 1] to the model's input space (any H, W)."""
        mean, std = self._stats(images01)
        return (images01 - mean) / std

    def denormalize(self, model_input: torch.Tensor) -> torch.Tensor:
        """Map model input back to [0, 1] pixel values, e.g. to show a preprocessed batch."""
        mean, std = self._stats(model_input)
        return model_input * std + mean

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
        return mean, std
