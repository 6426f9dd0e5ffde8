"""A private, faster copy of a model for inference: batch norm folded into convolutions, channels-last.

In eval mode a batch norm after a convolution is a fixed affine map, so it can be folded into the
convolution's weights and bias; the batch-norm module is replaced by an Identity, which keeps every layer
name addressable. A folded convolution outputs what its batch norm did, so a convolution that the caller
reads (``keep``) is left unfolded: every layer name gives the same values on the copy as on the model. Channels-last memory layout speeds up (depthwise) convolutions on CPUs. Measured on the
2-core CPU (benchmarks/optvis_vs_lucent.py): about 1.9x more render steps per second on EfficientNet-Lite0.
render() and dissect() use it; the user's model is never modified: this works on a deep copy.

On a CPU, batch size matters more than it seems: glibc serves every block above its mmap threshold
(adaptive, at most 32 MiB) straight from the OS and hands it back when it is freed, so each new tensor
that large is page-faulted in again. On the 2-core CPU a ReLU6 over a 150 MB tensor took 41 ms out of
place and 4 ms in place, and EfficientNet-Lite0 up to blocks.4 ran at 11 ms per image in batches of 32
and 2.4 ms in batches of 4. ``inference_batch_size`` picks the largest batch whose activations stay
below that size.
"""

from __future__ import annotations

import copy
import math
from typing import Collection

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from interpviz.models.zoo import LoadedModel

LARGE_BLOCK_BYTES = 32 * 2**20
GLIBC_MEMORY_REUSE = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"
"""GLIBC_TUNABLES value (the Makefile exports the same) that keeps up to 1 GiB of freed memory for reuse."""


def fold_batch_norms(module: nn.Module, keep: Collection[str] = ()) -> int:
    """In place: fold every BatchNorm2d that directly follows a Conv2d inside an nn.Sequential. Returns the count.

    Convolutions whose module path is in ``keep`` are not folded, so that their output stays their own.
    """
    folded = 0
    sequentials = [(path, sub) for path, sub in module.named_modules() if isinstance(sub, nn.Sequential)]
    for path, sequential in sequentials:
        names = list(sequential._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = sequential._modules[first], sequential._modules[second]
            conv_path = f"{path}.{first}" if path else first
            if conv_path in keep:
                continue
            if type(norm) is nn.BatchNorm2d and isinstance(conv, nn.Conv2d) and norm.track_running_stats:
                fused = fuse_conv_bn_eval(conv, norm)
                sequential._modules[first] = fused
                sequential._modules[second] = nn.Identity()
                folded += 1
    return folded


FRESH_OUTPUT_MODULES = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
IN_PLACE_ACTIVATIONS = (nn.ReLU, nn.Hardtanh, nn.LeakyReLU)


def activations_in_place(module: nn.Module) -> int:
    """In place: switch to in-place mode every ReLU-like activation whose input is a fresh tensor. Returns the count.

    Fresh means made just before it in the same nn.Sequential by a convolution, batch norm or linear layer
    (possibly through the Identity a folded batch norm leaves): in a Sequential nothing else reads that
    tensor, so overwriting it is safe, and it saves allocating (and on a CPU page-faulting) a new one.
    """
    switched = 0
    for sequential in [sub for sub in module.modules() if isinstance(sub, nn.Sequential)]:
        fresh = False
        for child in sequential.children():
            if isinstance(child, IN_PLACE_ACTIVATIONS) and fresh:
                switched += not child.inplace
                child.inplace = True
            elif not isinstance(child, nn.Identity):
                fresh = isinstance(child, FRESH_OUTPUT_MODULES)
    return switched


def fast_copy(module: nn.Module, keep: Collection[str] = ()) -> nn.Module:
    """A deep copy in eval mode, without weight gradients, batch norms folded, in-place activations, channels-last.

    ``keep``: module paths that the caller will read; they output on the copy what they output on the model.
    """
    fast = copy.deepcopy(module).eval()
    fast.requires_grad_(False)
    for sub in fast.modules():
        sub._forward_hooks.clear()
        sub._forward_pre_hooks.clear()
    with torch.no_grad():
        fold_batch_norms(fast, keep)
    activations_in_place(fast)
    return fast.to(memory_format=torch.channels_last)


def inference_batch_size(model: LoadedModel, image_size: tuple[int, int] | None = None, most: int = 32) -> int:
    """Images per batch: ``most`` on a GPU; on a CPU, as many as keep every layer's output under LARGE_BLOCK_BYTES.

    Layer sizes are read from ``model.layers`` (at the model's input size) and scaled to ``image_size``.
    """
    if model.device.type != "cpu":
        return most
    input_size = model.preprocess.input_size
    height, width = image_size or (input_size, input_size)
    largest = max(math.prod(info.output_shape) for info in model.layers)
    per_image_bytes = largest * height * width / input_size**2 * 4
    return max(1, min(most, math.floor(LARGE_BLOCK_BYTES / per_image_bytes)))
