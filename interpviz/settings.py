"""Run-time switches read from the environment: fast mode for tests, offline mode, device, cache folder."""

from __future__ import annotations

import itertools
import os
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

FAST_MODE_VARIABLE = "INTERPVIZ_FAST"
OFFLINE_VARIABLE = "INTERPVIZ_OFFLINE"
CACHE_VARIABLE = "INTERPVIZ_CACHE"
DEVICE_VARIABLE = "INTERPVIZ_DEVICE"

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
    """The device named by INTERPVIZ_DEVICE (cpu, cuda, cuda:1), else CUDA if a GPU is visible, else the CPU.

    Models, training and the notebooks all start from here, so setting the variable once moves the whole course.
    """
    chosen = os.environ.get(DEVICE_VARIABLE, "").strip()
    if not chosen:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(chosen)
    except RuntimeError:
        raise ValueError(f"{DEVICE_VARIABLE}={chosen!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{DEVICE_VARIABLE}={chosen!r} asks for a GPU, but PyTorch sees none here; "
                           "unset it or set it to cpu")
    return device


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a torch.device; None means ``default_device()``."""
    return torch.device(device) if device is not None else default_device()


def describe_device() -> str:
    """One line saying which device the course runs on and how to change it, for a notebook's first output."""
    device = default_device()
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        what = f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB"
    elif device.type == "cpu":
        what = f"{torch.get_num_threads()} threads" + ("" if torch.cuda.is_available() else ", no GPU visible")
    else:
        what = device.type
    return f"device: {device} ({what}); set {DEVICE_VARIABLE} to choose another"


def model_device(module: nn.Module) -> torch.device:
    """Where a module's parameters (or, without parameters, its buffers) live; the CPU for a module with neither."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


def to_cpu(value: Any) -> Any:
    """A copy of ``value`` with every tensor in it (also inside dicts, lists and tuples) detached and on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(item) for item in value)
    return value


@contextmanager
def repeatable_kernels() -> Iterator[None]:
    """Inside the block cuDNN picks only deterministic algorithms, so the same seed trains the same weights on a GPU."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that a run can be repeated exactly on the same device."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
