"""Shared fixtures: tests run offline and in fast mode, like CI."""

import os

os.environ.setdefault("INTERPVIZ_OFFLINE", "1")
os.environ.setdefault("INTERPVIZ_FAST", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from interpviz import models  # noqa: E402


@pytest.fixture(scope="session")
def lite0():
    """Pretrained EfficientNet-Lite0 on the CPU, shared by all tests (it is never modified)."""
    return models.load("efficientnet_lite0", device="cpu")


@pytest.fixture
def no_hooks_left():
    """A checker that fails if any module of a model still has a forward hook."""

    def check(module: torch.nn.Module) -> None:
        leftover = [name for name, sub in module.named_modules() if sub._forward_hooks or sub._forward_pre_hooks]
        assert leftover == [], f"hooks left behind on {leftover}"

    return check
