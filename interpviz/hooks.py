"""Named layers and forward hooks: capture activations in a context manager that always removes its hooks.

Works on any ``nn.Module`` (layers are its module paths, such as ``blocks.10`` or ``layer3.1``) and on a
zoo ``LoadedModel`` (which adds aliases such as ``conv5``). ``forward_to`` runs a model only as deep as
the requested layers: once the last one has produced its output, the forward pass stops.
"""

from __future__ import annotations

import difflib
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn


class UnknownLayerError(ValueError):
    """A layer name that the model does not have; the message lists the closest valid names."""


class ChannelOutOfRangeError(IndexError):
    """A channel index outside a layer's channels."""


class LayerCalledTwiceError(ValueError):
    """A layer whose module runs more than once per forward pass, so that 'its output' is ambiguous."""


def called_twice_message(name: str) -> str:
    """The one message every function gives for a layer whose module runs more than once per forward pass."""
    return (f"layer {name!r} runs more than once in each forward pass (a module shared inside a block, such as "
            "the ReLU of a ResNet block), so its output is ambiguous; address its parent module or a layer "
            "that runs once instead")


@dataclass(frozen=True)
class LayerInfo:
    """One addressable layer: its module path, module type and output shape for one image (C, H, W) or (C,)."""

    name: str
    kind: str
    output_shape: tuple[int, ...]

    @property
    def channels(self) -> int:
        """Number of channels (or units, for a vector output)."""
        return self.output_shape[0]

    def check_channel(self, channel: int) -> int:
        """Return ``channel`` if this layer has it, else raise an error that gives the valid range."""
        if not isinstance(channel, int) or isinstance(channel, bool):
            raise TypeError(f"channel must be an int, got {type(channel).__name__}")
        if not 0 <= channel < self.channels:
            raise ChannelOutOfRangeError(
                f"channel {channel} is out of range for layer {self.name!r}, which has {self.channels} "
                f"channels: use 0 .. {self.channels - 1}"
            )
        return channel


class _StopForward(Exception):
    """Raised inside a hook to end a forward pass once every requested layer has been computed."""


def _unwrap(model) -> tuple[nn.Module, dict[str, str]]:
    if isinstance(model, nn.Module):
        return model, {}
    return model.module, dict(getattr(model, "layer_aliases", {}))


def resolve_layer_name(name: str, valid_names: Sequence[str], aliases: dict[str, str] | None = None) -> str:
    """Map a layer name or alias to its module path; unknown names raise UnknownLayerError with suggestions."""
    aliases = aliases or {}
    if name in aliases:
        return aliases[name]
    if name in valid_names:
        return name
    candidates = list(aliases) + list(valid_names)
    close = difflib.get_close_matches(name, candidates, n=6, cutoff=0.5)
    suggestion = f"closest valid names: {', '.join(close)}" if close else f"valid names start with: {', '.join(candidates[:12])}"
    raise UnknownLayerError(f"unknown layer {name!r}; {suggestion}")


def _module_table(module: nn.Module) -> dict[str, nn.Module]:
    return {name: sub for name, sub in module.named_modules() if name}


def layer_path(model, name: str) -> str:
    """The module path of layer ``name`` (module path or alias)."""
    module, aliases = _unwrap(model)
    return resolve_layer_name(name, list(_module_table(module)), aliases)


def get_layer(model, name: str) -> nn.Module:
    """The submodule called ``name`` (module path or alias)."""
    module, _ = _unwrap(model)
    return _module_table(module)[layer_path(model, name)]


@dataclass(frozen=True)
class _DryRun:
    """What one forward pass of a module showed: call order, calls per module path, output shapes."""

    order: list[str]
    calls: dict[str, int]
    shapes: dict[str, tuple[int, ...]]


_dry_runs: "weakref.WeakKeyDictionary[nn.Module, _DryRun]" = weakref.WeakKeyDictionary()


def _dry_run(module: nn.Module, example: torch.Tensor) -> _DryRun:
    """Run ``module`` once on ``example`` without gradients and record every submodule's calls and shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}
    order: list[str] = []
    handles = []

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            if name not in calls:
                order.append(name)
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape[1:])

        return hook

    try:
        for name, sub in _module_table(module).items():
            handles.append(sub.register_forward_hook(make_hook(name)))
        with torch.no_grad():
            module(example)
    finally:
        for handle in handles:
            handle.remove()
    run = _DryRun(order, calls, shapes)
    _dry_runs[module] = run
    return run


def check_called_once(model, names: Sequence[str], example: torch.Tensor) -> None:
    """Raise LayerCalledTwiceError for any of ``names`` whose module runs more than once per forward pass.

    The call counts come from one dry forward pass of one image like ``example``, remembered per module.
    """
    module, aliases = _unwrap(model)
    valid_names = list(_module_table(module))
    paths = {name: resolve_layer_name(name, valid_names, aliases) for name in names}
    run = _dry_runs.get(module) or _dry_run(module, example[:1].detach())
    for name, path in paths.items():
        if run.calls.get(path, 0) > 1:
            raise LayerCalledTwiceError(called_twice_message(name))


@contextmanager
def capture(model, layers: str | Sequence[str], detach: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` during every forward pass in the block; hooks go away on exit.

    Outputs are cloned, so an in-place operation later in the network (``ReLU(inplace=True)``) cannot
    change what was recorded. Keys of the yielded dict are the names the caller gave.
    """
    module, aliases = _unwrap(model)
    names = [layers] if isinstance(layers, str) else list(layers)
    table = _module_table(module)
    targets = {name: table[resolve_layer_name(name, list(table), aliases)] for name in names}
    recorded: dict[str, torch.Tensor] = {}
    seen_this_pass: set[str] = set()
    handles = [module.register_forward_pre_hook(lambda _module, _inputs: seen_this_pass.clear())]
    try:
        for name, target in targets.items():
            handles.append(target.register_forward_hook(_recorder(name, recorded, seen_this_pass, detach)))
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def _recorder(name: str, recorded: dict[str, torch.Tensor], seen_this_pass: set[str], detach: bool):
    def hook(_module, _inputs, output):
        if name in seen_this_pass:
            raise LayerCalledTwiceError(called_twice_message(name))
        seen_this_pass.add(name)
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor; choose another layer")
        recorded[name] = output.detach().clone() if detach else output.clone()

    return hook


def forward_to(model, inputs: torch.Tensor, layers: str | Sequence[str], detach: bool = False) -> dict[str, torch.Tensor]:
    """Run the model until every layer in ``layers`` has produced its output, and return those outputs.

    Deeper layers are never computed: a hook ends the forward pass as soon as the last requested layer
    is done. Gradients flow unless ``detach`` is set (or the caller uses ``torch.no_grad``).
    """
    module, _ = _unwrap(model)
    names = [layers] if isinstance(layers, str) else list(layers)
    check_called_once(model, names, inputs)
    stop_handles = []
    with capture(model, names, detach=detach) as recorded:

        def stop_when_complete(_module, _inputs, _output):
            if len(recorded) == len(set(names)):
                raise _StopForward

        try:
            for name in set(names):
                stop_handles.append(get_layer(model, name).register_forward_hook(stop_when_complete))
            module(inputs)
        except _StopForward:
            pass
        finally:
            for handle in stop_handles:
                handle.remove()
    missing = [name for name in names if name not in recorded]
    if missing:
        raise RuntimeError(f"the forward pass never reached layer(s) {missing}; are they used in forward()?")
    return {name: recorded[name] for name in names}


def describe_layers(module: nn.Module, input_size: int, device: torch.device | str = "cpu",
                    aliases: dict[str, str] | None = None) -> list[LayerInfo]:
    """Run one dry forward pass and list every module that is called exactly once and returns a tensor.

    Modules called more than once per pass (a ReLU shared inside a ResNet block) are left out, because
    their output is ambiguous; address their parent instead.
    """
    run = _dry_run(module, torch.zeros(1, 3, input_size, input_size, device=device))
    table = _module_table(module)
    return [
        LayerInfo(name=name, kind=type(table[name]).__name__, output_shape=run.shapes[name])
        for name in run.order
        if run.calls[name] == 1 and name in run.shapes
    ]
