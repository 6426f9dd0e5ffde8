"""Reading checkpoint files: an empty, truncated or corrupted file gives an error that says how to get a good one."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

# What torch.load raises on bad bytes; missing files and permission problems are reported as they are.
UNREADABLE_FILE_ERRORS = (EOFError, OSError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError)
FILE_ACCESS_ERRORS = (FileNotFoundError, IsADirectoryError, PermissionError)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read; the message names the file and says how to get a good one."""


def load_checkpoint(path: str | Path, how_to_fix: str) -> Any:
    """``torch.load`` of tensors and plain values onto the CPU; a file it cannot read is a CheckpointError."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FILE_ACCESS_ERRORS:
        raise
    except UNREADABLE_FILE_ERRORS as error:
        torch_says = str(error).split(". ")[0].strip()
        detail = f"{type(error).__name__}: {torch_says}" if torch_says else type(error).__name__
        problem = "it is empty" if path.stat().st_size == 0 else f"it is truncated or corrupted ({detail})"
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: {problem}. {how_to_fix}") from None
