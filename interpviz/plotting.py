"""Matplotlib figures the course draws again and again: image grids, filter grids, feature-map grids."""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.textpath import TextPath


GAP_INCHES = 0.12  # around and between images
TITLE_LINE_INCHES = 0.13  # one line of a 7 pt title
TITLE_PAD_INCHES = 0.1  # between a title and its image
SUPTITLE_INCHES = 0.35
TITLE_POINTS = 7
SUPTITLE_POINTS = 12


def text_inches(text: str, points: float) -> float:
    """How wide the widest line of ``text`` is drawn at ``points`` in matplotlib's default font, in inches."""
    return max((TextPath((0, 0), line, size=points).get_extents().width / 72 for line in text.split("\n") if line),
               default=0.0)


def _as_display_array(image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.ndim == 3 and image.shape[0] in (1, 3):
            image = image.permute(1, 2, 0)
        image = image.numpy()
    image = np.asarray(image)
    return image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image


def image_grid(
    images: Sequence,
    titles: Sequence[str] | None = None,
    columns: int = 8,
    cell_inches: float = 1.6,
    cmap: str | None = None,
    suptitle: str | None = None,
) -> Figure:
    """Show images (uint8 HxWx3 arrays, PIL images, or (3, H, W) tensors in [0, 1]) in a grid, axes off.

    Every image is drawn exactly ``cell_inches`` wide, centred in a column as wide as its widest title; the
    figure grows by the room that titles and gaps take.
    """
    count = len(images)
    if count == 0:
        raise ValueError("nothing to show: the list of images is empty")
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    titles = [str(title) for title in titles] if titles is not None else None
    title_lines = max(title.count("\n") + 1 for title in titles) if titles else 0
    title_inches = TITLE_LINE_INCHES * title_lines + TITLE_PAD_INCHES if titles else 0.0
    column_inches = max([cell_inches, *(text_inches(title, TITLE_POINTS) for title in titles or [])])
    top_inches = SUPTITLE_INCHES if suptitle else 0.0
    grid_width = columns * (column_inches + GAP_INCHES) + GAP_INCHES
    width = max(grid_width, text_inches(suptitle or "", SUPTITLE_POINTS) + 2 * GAP_INCHES)
    height = top_inches + rows * (title_inches + cell_inches + GAP_INCHES) + GAP_INCHES
    figure = plt.figure(figsize=(width, height))
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        left = ((width - grid_width) / 2 + GAP_INCHES + column * (column_inches + GAP_INCHES)
                + (column_inches - cell_inches) / 2)
        bottom = height - (top_inches + GAP_INCHES + row * (title_inches + cell_inches + GAP_INCHES) + title_inches
                           + cell_inches)
        axis = figure.add_axes((left / width, bottom / height, cell_inches / width, cell_inches / height))
        axis.axis("off")
        axis.imshow(_as_display_array(image), cmap=cmap)
        if titles is not None:
            axis.set_title(titles[index], fontsize=TITLE_POINTS)
    if suptitle:
        figure.suptitle(suptitle, y=1 - 0.05 / height, va="top", fontsize=SUPTITLE_POINTS)
    return figure


def filter_grid(weight: torch.Tensor, columns: int = 8, suptitle: str | None = None) -> Figure:
    """First-layer filters (out, 3, k, k) as small RGB images, each rescaled symmetrically around grey."""
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected first-layer filters of shape (out, 3, k, k), got {tuple(weight.shape)}")
    filters = weight.detach().cpu().float()
    scale = filters.flatten(1).abs().amax(dim=1).clamp_min(1e-8).view(-1, 1, 1, 1)
    shown = filters / scale * 0.5 + 0.5
    return image_grid(list(shown), titles=[str(i) for i in range(len(shown))], columns=columns,
                      cell_inches=0.9, suptitle=suptitle)


def feature_map_grid(maps: torch.Tensor, channels: Sequence[int] | None = None, columns: int = 8,
                     suptitle: str | None = None) -> Figure:
    """Selected channels of a (C, H, W) activation tensor as heat maps, each with its own colour scale."""
    if maps.ndim != 3:
        raise ValueError(f"expected feature maps of shape (channels, height, width), got {tuple(maps.shape)}")
    channels = list(range(min(maps.shape[0], 16))) if channels is None else list(channels)
    return image_grid([maps[c] for c in channels], titles=[f"ch {c}" for c in channels], columns=columns,
                      cmap="viridis", suptitle=suptitle)


def mark_position(axis, position: int, map_size: tuple[int, int], image_size: tuple[int, int]) -> None:
    """Draw a box on ``axis`` around the part of the image that a feature-map cell at ``position`` covers."""
    map_h, map_w = map_size
    image_h, image_w = image_size
    row, col = divmod(position, map_w)
    cell_h, cell_w = image_h / map_h, image_w / map_w
    axis.add_patch(plt.Rectangle((col * cell_w, row * cell_h), cell_w, cell_h, fill=False, edgecolor="red", linewidth=1.5))


def dataset_examples_figure(images, maxima, channel: int, k: int = 8, columns: int = 8) -> Figure:
    """The k images that excite ``channel`` most, titled with the maximum, the hottest map cell boxed in red."""
    indices, values = maxima.top(channel, k)
    figure = image_grid([images.images[i] for i in indices], titles=[f"{v:.2f}" for v in values], columns=columns,
                        suptitle=f"{maxima.layer}, channel {channel}: top {len(indices)} of {len(images)} images")
    image_size = images.images.shape[1:3]
    for axis, index in zip(figure.axes, indices):
        mark_position(axis, int(maxima.positions[index, channel]), maxima.map_size, image_size)
    return figure
