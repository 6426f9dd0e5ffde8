"""render(): optimize an image parameterization so that an objective is as large as possible.

Each step: draw the images from the parameterization, apply the random transforms, normalise them as the
model expects, run the model only as deep as the objective needs, and take one optimizer step on minus
the objective. The user's model is left exactly as it was: modes and requires_grad flags are restored and
every hook is removed, also when the render fails or is interrupted.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from interpviz.hooks import forward_to, layer_path
from interpviz.images import to_pil
from interpviz.optvis.objectives import Objective, StepContext
from interpviz.optvis.params import make_image
from interpviz.optvis.transforms import STANDARD_TRANSFORMS, Transform, compose
from interpviz import speed

StepCallback = Callable[[int, torch.Tensor, float], None]


@dataclass
class RenderResult:
    """Rendered images (B, 3, H, W) in [0, 1] on the CPU, the objective per step, final scores, snapshots."""

    images: torch.Tensor
    history: list[float]
    final_scores: torch.Tensor
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def pil(self) -> list[Image.Image]:
        """The images as PIL images."""
        return [to_pil(image) for image in self.images]


_locks_guard = threading.Lock()
_module_locks: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()


def _module_lock(module: nn.Module) -> threading.RLock:
    with _locks_guard:
        return _module_locks.setdefault(module, threading.RLock())


@contextmanager
def frozen_model(module: nn.Module) -> Iterator[None]:
    """Put a module in eval mode with requires_grad off for the block, then restore both exactly.

    The block holds a lock of the module's own: a second thread that renders the same module waits for
    the first to finish (the two would otherwise share forward hooks and each other's saved flags).
    """
    with _module_lock(module):
        modes = [(sub, sub.training) for sub in module.modules()]
        flags = [(parameter, parameter.requires_grad) for parameter in module.parameters()]
        try:
            module.eval()
            for parameter, _ in flags:
                parameter.requires_grad_(False)
            yield
        finally:
            for sub, training in modes:
                sub.training = training
            for parameter, requires_grad in flags:
                parameter.requires_grad_(requires_grad)


def _module_and_normalize(model) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor], torch.device]:
    if isinstance(model, nn.Module):
        parameter = next(model.parameters(), None)
        return model, (lambda images: images), parameter.device if parameter is not None else torch.device("cpu")
    return model.module, model.preprocess.normalize, model.device


@torch.no_grad()
def evaluate(model, objective: Objective, images: torch.Tensor) -> torch.Tensor:
    """The objective's per-image scores for fixed images in [0, 1] (no transforms), on the CPU."""
    _, normalize, device = _module_and_normalize(model)
    images = images.to(device)
    activations = forward_to(model, normalize(images), sorted(objective.layers)) if objective.layers else {}
    return objective(StepContext(activations, images)).cpu()


def default_optimizer(parameters, lr: float) -> torch.optim.Optimizer:
    """Adam, as in Lucid."""
    return torch.optim.Adam(parameters, lr=lr)


def render(
    model,
    objective: Objective,
    image: nn.Module | None = None,
    *,
    size: int = 128,
    batch: int = 1,
    steps: int = 256,
    lr: float = 0.05,
    transforms: Sequence[Transform] = STANDARD_TRANSFORMS,
    parameterization: str = "fourier",
    decorrelate: bool = True,
    optimizer: Callable[..., torch.optim.Optimizer] = default_optimizer,
    seed: int = 0,
    snapshot_steps: Sequence[int] = (),
    progress: bool = True,
    callback: StepCallback | None = None,
    fast_copy: bool = True,
) -> RenderResult:
    """Maximize ``objective`` over images and return them with the objective's history.

    ``model`` is a zoo ``LoadedModel`` (its preprocessing normalises the images) or any ``nn.Module`` that
    takes images in [0, 1]. ``image`` is a parameterization module (see ``optvis.params``); by default a
    decorrelated Fourier image of ``batch`` x ``size`` px, drawn from ``seed``. On the CPU the same call
    with the same seed gives the same image. ``snapshot_steps`` keeps copies of the images after those
    steps; ``callback(step, images, value)`` is called after every step (e.g. to update a widget).
    With ``fast_copy`` (the default) the optimization runs on a private copy of the model with batch norms
    folded and channels-last layout (``interpviz.speed``), which is about twice as fast on a CPU; hooks that
    the user put on the model do not run on that copy (pass ``fast_copy=False`` to render the model itself).
    """
    if steps < 0:
        raise ValueError(f"steps must be at least 0, got {steps}")
    if image is None and size < 1:
        raise ValueError(f"size must be at least 1 pixel, got {size}")
    if image is None and batch < 1:
        raise ValueError(f"batch must be at least 1 image, got {batch}")
    if not objective.layers:
        raise ValueError("the objective reads no layer; add a unit objective (e.g. channel_objective) to it")
    module, normalize, device = _module_and_normalize(model)
    layer_paths = [layer_path(model, name) for name in objective.layers]
    if fast_copy:
        module = speed.fast_copy(module, keep=layer_paths)
        model = module if isinstance(model, nn.Module) else dataclasses.replace(model, module=module)
    layers = sorted(objective.layers)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        if image is None:
            image = make_image(parameterization, batch, size, decorrelate=decorrelate, generator=generator)
        image = image.to(device)
        apply_transforms = compose(transforms)
        step_optimizer = optimizer([p for p in image.parameters() if p.requires_grad], lr)
        history: list[float] = []
        snapshots: dict[int, torch.Tensor] = {}
        wanted = set(snapshot_steps)
        if 0 in wanted:
            snapshots[0] = image().detach().cpu()
        with frozen_model(module):
            for step in tqdm(range(1, steps + 1), desc="render", disable=not progress, leave=False):
                step_optimizer.zero_grad(set_to_none=True)
                images = image()
                model_input = normalize(apply_transforms(images, generator))
                activations = forward_to(model, model_input, layers)
                value = objective(StepContext(activations, images)).sum()
                if not torch.isfinite(value):
                    raise FloatingPointError(
                        f"the objective became {float(value)} at step {step} of {steps}; lower the learning rate "
                        "(lr) or the weights of the objective's terms, or check a division in a custom objective")
                (-value).backward()
                step_optimizer.step()
                history.append(float(value.detach()))
                if step in wanted or callback is not None:
                    current = image().detach()
                    if step in wanted:
                        snapshots[step] = current.cpu()
                    if callback is not None:
                        callback(step, current, history[-1])
            with torch.no_grad():
                final_images = image()
            final_scores = evaluate(model, objective, final_images)
    return RenderResult(
        images=final_images.cpu(),
        history=history,
        final_scores=final_scores,
        snapshots=snapshots,
    )
