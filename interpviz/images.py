"""Checking and converting user images: PIL RGB images and uint8 (H, W, 3) arrays in, float tensors out."""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image

ImageLike = Union[Image.Image, np.ndarray]

ALLOWED_IMAGES = "a PIL image in mode 'RGB' or a numpy uint8 array of shape (height, width, 3)"


def as_rgb_array(image: ImageLike) -> np.ndarray:
    """Return the image as a uint8 (H, W, 3) array, or raise a ValueError/TypeError that says what is allowed."""
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            raise ValueError(
                f"got a PIL image in mode {image.mode!r}; interpviz takes {ALLOWED_IMAGES}. "
                f"Convert it first, e.g. image.convert('RGB')"
                + (" (decide first what transparent pixels should become)" if "A" in image.mode else "")
            )
        return _not_empty(np.asarray(image))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(
                f"got a numpy array of dtype {image.dtype}; interpviz takes {ALLOWED_IMAGES}. "
                "For floats in [0, 1] use (array * 255).round().astype(np.uint8)"
            )
        if image.ndim == 2:
            raise ValueError(
                f"got a grey image of shape {image.shape}; interpviz takes {ALLOWED_IMAGES}. "
                "Repeat the channel: np.stack([image] * 3, axis=-1)"
            )
        if image.ndim != 3 or image.shape[2] != 3:
            hint = " (RGBA: drop or composite the alpha channel first)" if image.ndim == 3 and image.shape[2] == 4 else ""
            raise ValueError(f"got an array of shape {image.shape}; interpviz takes {ALLOWED_IMAGES}{hint}")
        if any(stride < 0 for stride in image.strides):
            image = image.copy()
        return _not_empty(image)
    raise TypeError(f"got {type(image).__name__}; interpviz takes {ALLOWED_IMAGES}, or a list of them")


def _not_empty(array: np.ndarray) -> np.ndarray:
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"got an empty image of height {array.shape[0]} and width {array.shape[1]}; "
                         "images need at least one pixel")
    return array


def as_image_list(images: ImageLike | Sequence[ImageLike]) -> list[np.ndarray]:
    """Accept one image or a sequence of images and return a list of checked uint8 (H, W, 3) arrays."""
    if isinstance(images, (Image.Image, np.ndarray)):
        return [as_rgb_array(images)]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("got an empty list of images")
        return [as_rgb_array(image) for image in images]
    return [as_rgb_array(images)]


def to_tensor(images: ImageLike | Sequence[ImageLike]) -> torch.Tensor:
    """Stack same-sized images into a float (N, 3, H, W) tensor with values in [0, 1]."""
    arrays = as_image_list(images)
    shapes = {array.shape for array in arrays}
    if len(shapes) > 1:
        raise ValueError(f"images must share one size to be stacked, got shapes {sorted(shapes)}")
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return batch.float().div_(255)


def to_pil(image: torch.Tensor | np.ndarray) -> Image.Image:
    """Turn a (3, H, W) float tensor in [0, 1], or a uint8 (H, W, 3) array, into a PIL image."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a (3, height, width) tensor, got shape {tuple(image.shape)}")
        array = image.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(array)
    return Image.fromarray(as_rgb_array(image))


def tile(images: torch.Tensor, columns: int = 8, gap: int = 2) -> Image.Image:
    """Lay a (N, 3, H, W) batch in [0, 1] out as one PIL image, ``columns`` wide, with white gaps."""
    count, _, height, width = images.shape
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    sheet = Image.new("RGB", (columns * width + (columns - 1) * gap, rows * height + (rows - 1) * gap), "white")
    for index, image in enumerate(images):
        row, col = divmod(index, columns)
        sheet.paste(to_pil(image), (col * (width + gap), row * (height + gap)))
    return sheet
