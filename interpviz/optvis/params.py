"""Image parameterizations: modules whose forward() returns a batch of images (B, 3, H, W) in [0, 1].

What is optimized is not always the pixels. A Fourier parameterization scales the spectrum by 1/f^decay,
so every frequency learns at a similar rate and the image avoids high-frequency noise; colour
decorrelation optimizes in a space where the colour channels are uncorrelated, as in natural images; a
sigmoid squashes the result into [0, 1]. A CPPN draws the image from a small network of the pixel
coordinates, a prior that needs no training data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_COLOR_CORRELATION_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float32
)


def normalized_color_matrix(matrix: torch.Tensor) -> torch.Tensor:
    """Scale a colour matrix so that its largest column has unit norm (as Lucid does)."""
    return matrix / matrix.norm(dim=0).max()


def color_correlation_sqrt(images: torch.Tensor) -> torch.Tensor:
    """The square root of the pixel colour covariance of (N, 3, H, W) images: eigenvectors x sqrt(eigenvalues)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1).double()
    covariance = torch.cov(pixels)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    return (eigenvectors * eigenvalues.clamp_min(0).sqrt()).float()


class ColorSpace(nn.Module):
    """Maps unconstrained values to RGB in [0, 1]: an optional decorrelating colour matrix, then a sigmoid."""

    def __init__(self, decorrelate: bool = True, color_matrix: torch.Tensor | None = None):
        super().__init__()
        matrix = IMAGENET_COLOR_CORRELATION_SQRT if color_matrix is None else color_matrix
        self.decorrelate = decorrelate
        self.register_buffer("matrix", normalized_color_matrix(matrix.float()))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        if self.decorrelate:
            values = torch.einsum("ij,bjhw->bihw", self.matrix, values)
        return torch.sigmoid(values)

    def inverse(self, images01: torch.Tensor) -> torch.Tensor:
        """Unconstrained values that map back to ``images01`` (used to start from a photo)."""
        values = torch.logit(images01.clamp(1e-4, 1 - 1e-4))
        if self.decorrelate:
            values = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.matrix), values)
        return values


class PixelImage(nn.Module):
    """One parameter per pixel and colour; starts from small noise, or from ``start`` images in [0, 1]."""

    def __init__(self, batch: int = 1, size: int = 128, sd: float = 0.01, decorrelate: bool = True,
                 start: torch.Tensor | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.color = ColorSpace(decorrelate)
        if start is not None:
            values = self.color.inverse(start.float())
        else:
            values = torch.randn(batch, 3, size, size, generator=generator) * sd
        self.values = nn.Parameter(values)

    def forward(self) -> torch.Tensor:
        return self.color(self.values)


def _frequencies(height: int, width: int) -> torch.Tensor:
    rows = torch.fft.fftfreq(height)[:, None]
    cols = torch.fft.rfftfreq(width)[None, :]
    return torch.sqrt(rows**2 + cols**2)


class FourierImage(nn.Module):
    """Image given by its 2-D spectrum, each frequency f scaled by 1/f^decay_power (Lucid: decay 1, sd 0.01)."""

    def __init__(self, batch: int = 1, size: int = 128, decay_power: float = 1.0, sd: float = 0.01,
                 decorrelate: bool = True, generator: torch.Generator | None = None):
        super().__init__()
        self.size = size
        self.color = ColorSpace(decorrelate)
        frequencies = _frequencies(size, size)
        scale = 1.0 / frequencies.clamp_min(1.0 / size) ** decay_power
        self.register_buffer("scale", scale * math.sqrt(size * size))
        self.spectrum = nn.Parameter(torch.randn(batch, 3, *frequencies.shape, 2, generator=generator) * sd)

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        values = torch.fft.irfft2(spectrum, s=(self.size, self.size)) / 4
        return self.color(values)


class CompositeActivation(nn.Module):
    """atan(x) and atan(x)^2, rescaled to unit variance and concatenated: the CPPN's non-linearity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.atan(x)
        return torch.cat([x / 0.67, x * x / 0.6], dim=1)


class CPPNImage(nn.Module):
    """A compositional pattern-producing network: RGB = net(x, y, r) per pixel, one small net per image."""

    def __init__(self, batch: int = 1, size: int = 128, hidden: int = 24, depth: int = 8,
                 generator: torch.Generator | None = None):
        super().__init__()
        axis = torch.linspace(-3**0.5, 3**0.5, size)
        y, x = torch.meshgrid(axis, axis, indexing="ij")
        self.register_buffer("coordinates", torch.stack([x, y, torch.sqrt(x * x + y * y)])[None])
        self.networks = nn.ModuleList(self._network(hidden, depth, generator) for _ in range(batch))

    @staticmethod
    def _network(hidden: int, depth: int, generator: torch.Generator | None) -> nn.Sequential:
        layers, channels = [], 3
        for _ in range(depth):
            layers += [nn.Conv2d(channels, hidden, 1), CompositeActivation()]
            channels = 2 * hidden
        layers += [nn.Conv2d(channels, 3, 1), nn.Sigmoid()]
        network = nn.Sequential(*layers)
        with torch.no_grad():
            for module in network:
                if isinstance(module, nn.Conv2d):
                    module.weight.normal_(0, 1 / math.sqrt(module.in_channels), generator=generator)
                    module.bias.zero_()
            network[-2].weight.zero_()
        return network

    def forward(self) -> torch.Tensor:
        return torch.cat([network(self.coordinates) for network in self.networks])


def make_image(kind: str, batch: int, size: int, decorrelate: bool = True,
               generator: torch.Generator | None = None) -> nn.Module:
    """A parameterization by name: 'fourier' (the default in render), 'pixel' or 'cppn'."""
    if kind == "fourier":
        return FourierImage(batch, size, decorrelate=decorrelate, generator=generator)
    if kind == "pixel":
        return PixelImage(batch, size, decorrelate=decorrelate, generator=generator)
    if kind == "cppn":
        return CPPNImage(batch, size, generator=generator)
    raise ValueError(f"unknown parameterization {kind!r}; choose 'fourier', 'pixel' or 'cppn'")
