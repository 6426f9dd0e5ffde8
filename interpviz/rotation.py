"""Rotating the channel basis of a layer (the rotation experiment of Bau & Zhou et al. 2017).

A random rotation Q of a layer's C channels leaves all the information in the layer (it is invertible), but
mixes the units. Fractional rotations Q^a, for a from 0 (identity) to 1 (Q), interpolate along the shortest
path in SO(C). Q^a is computed from the eigendecomposition Q = V diag(e^{i theta}) V^H (Q is normal, so V
is unitary): Q^a = V diag(e^{i a theta}) V^H, whose imaginary part vanishes because the eigenvalues come in
conjugate pairs. A random Q has no eigenvalue exactly -1 (probability zero), where the power would be
ambiguous.

Folding: if the rotated layer is followed only by linear maps (global average pooling, then a linear
classifier with weight W), the layer W' = W Q^T on the rotated features computes exactly the original
function, so discriminative power is unchanged by construction.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from interpviz import settings


def random_rotation(channels: int, seed: int = 0) -> torch.Tensor:
    """A random rotation matrix (orthogonal, determinant +1), uniform over SO(channels), from ``seed``."""
    if channels < 2:
        raise ValueError(f"a rotation needs at least 2 channels, got {channels}")
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(channels, channels, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r))[None, :]
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def fractional_rotation(rotation: torch.Tensor, amount: float) -> torch.Tensor:
    """Q^amount for a rotation Q, through its eigendecomposition; amount 0 gives I and 1 gives Q exactly (so that
    a unit that is exactly 0 somewhere stays exactly 0 at a = 0, and its dissection is the plain one)."""
    if amount == 0:
        return torch.eye(rotation.shape[0], dtype=torch.float64)
    if amount == 1:
        return rotation.to(torch.float64).clone()
    eigenvalues, eigenvectors = torch.linalg.eig(rotation.to(torch.float64))
    powered = torch.exp(1j * amount * torch.angle(eigenvalues))
    result = eigenvectors @ torch.diag(powered) @ torch.linalg.inv(eigenvectors)
    if result.imag.abs().max() > 1e-6:
        raise ValueError("the rotation has an eigenvalue at -1; its fractional power is not unique")
    return result.real


class ChannelRotation(nn.Module):
    """Multiplies the channel vector at every position by a fixed matrix: y[:, i] = sum_j R[i, j] x[:, j]."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.register_buffer("matrix", matrix.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,bj...->bi...", self.matrix, x)


def fold_into_linear(linear: nn.Linear, rotation: torch.Tensor) -> nn.Linear:
    """A new linear layer that gives on rotated inputs (R x) what ``linear`` gives on x: weight W R^T.

    It lives on the device of ``linear``, wherever ``rotation`` is.
    """
    weight = linear.weight
    folded = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None, device=weight.device,
                       dtype=weight.dtype)
    with torch.no_grad():
        folded.weight.copy_(weight.double() @ rotation.to(weight.device, torch.float64).T)
        if linear.bias is not None:
            folded.bias.copy_(linear.bias)
    return folded


def with_rotated_output(module: nn.Module, layer: str, rotation: torch.Tensor) -> nn.Module:
    """A copy of ``module`` in which the submodule at path ``layer`` is followed by ``ChannelRotation(rotation)``.

    Enough to dissect the rotated basis of any layer; the layers after it then receive rotated input, so
    the copy computes the same function only where the rotation is folded into what follows. The rotation is
    moved to the module's device.
    """
    device = settings.model_device(module)
    return copy_with_wrapped(module, layer, lambda original: nn.Sequential(original, ChannelRotation(rotation).to(device)))


def copy_with_wrapped(module: nn.Module, path: str, wrap: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """A deep copy of ``module`` in which the submodule at ``path`` is replaced by ``wrap(submodule)``."""
    copied = copy.deepcopy(module)
    parent_path, _, child = path.rpartition(".")
    parent = copied.get_submodule(parent_path) if parent_path else copied
    setattr(parent, child, wrap(getattr(parent, child)))
    return copied
