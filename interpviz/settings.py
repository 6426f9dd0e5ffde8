"""Run-time switches read from the environment: fast mode for tests, offline mode, device, cache folder."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

FAST_MODE_VARIABLE = "INTERPVIZ_FAST"
OFFLINE_VARIABLE = "INTERPVIZ_OFFLINE"
CACHE_VARIABLE = "INTERPVIZ_CACHE"

_TRUE_WORDS = {"1", "true", "yes", "on"}


def _flag(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() in _TRUE_WORDS


def fast_mode() -> bool:
    """True when INTERPVIZ_FAST is set: notebooks keep every step of their logic but shrink sizes and steps."""
    return _flag(FAST_MODE_VARIABLE)


def pick(full, fast):
    """Return ``fast`` in fast mode and ``full`` otherwise; notebooks use it for step counts and sizes."""
    return fast if fast_mode() else full


def offline() -> bool:
    """True when INTERPVIZ_OFFLINE is set: never try the network, fail at once when a file is missing."""
    return _flag(OFFLINE_VARIABLE)


def cache_dir() -> Path:
    """Folder for generated data (INTERPVIZ_CACHE, default ~/.cache/interpviz); created on first use."""
    folder = Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "interpviz")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def default_device() -> torch.device:
    """CUDA when a GPU is visible, otherwise the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that a run can be repeated exactly on the same device."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
