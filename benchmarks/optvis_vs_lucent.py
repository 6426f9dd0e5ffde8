"""Feature-visualization throughput of interpviz against torch-lucent 0.1.8, in one process.

Both libraries render a 16-channel grid of one EfficientNet-Lite0 layer as one batch of 16 images at
128 px: the same model weights, the same per-image channel objectives, Lucid's standard transforms, a
decorrelated Fourier image, Adam with lr 0.05, the same number of steps. Lucent gets preprocess=False
with the model's own normalisation as its last transform, and fixed_image_size=128 so that it does not
upsample to 224. Each library gets its own copy of the model, because Lucent leaves hooks behind.

Run: make bench  (or: .venv/bin/pip install torch-lucent==0.1.8 && .venv/bin/python benchmarks/optvis_vs_lucent.py)
     [--device cpu|cuda] [--without-lucent]  (interpviz alone, e.g. on a machine without Lucent)
"""

import argparse
import time

import numpy as np
import torch

from interpviz import models
from interpviz.optvis import channel_objective, recipes
from interpviz.optvis.render import evaluate


def mean_channel_activation(model, layer: str, channels: list[int], images: torch.Tensor) -> float:
    """Mean over images of each image's own channel activation (channel mean), with no transforms."""
    values = [float(evaluate(model, channel_objective(layer, c), images[i : i + 1])[0]) for i, c in enumerate(channels)]
    return float(np.mean(values))


def run_interpviz(model, layer: str, channels: list[int], size: int, steps: int) -> tuple[float, torch.Tensor]:
    started = time.perf_counter()
    result = recipes.channel_grid(model, layer, channels, size=size, steps=steps, progress=False)
    return time.perf_counter() - started, result.images


def run_lucent(module, normalize, layer: str, channels: list[int], size: int, steps: int) -> tuple[float, torch.Tensor]:
    from lucent.optvis import objectives, param, render, transform

    objective = sum(objectives.channel(layer.replace(".", "_"), c, batch=i) for i, c in enumerate(channels))
    started = time.perf_counter()
    images = render.render_vis(
        module, objective, lambda: param.image(size, batch=len(channels)),
        transforms=transform.standard_transforms + [normalize], thresholds=(steps,), preprocess=False,
        fixed_image_size=size, show_image=False, progress=False,
    )
    elapsed = time.perf_counter() - started
    return elapsed, torch.from_numpy(images[-1]).permute(0, 3, 1, 2).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--layers", nargs="+", default=["blocks.5", "blocks.14"])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: interpviz's default device)")
    parser.add_argument("--without-lucent", action="store_true", help="time interpviz alone")
    arguments = parser.parse_args()
    channels = list(range(16))
    ours = models.load("efficientnet_lite0", device=arguments.device)
    theirs = models.load("efficientnet_lite0", device=arguments.device)
    torch.manual_seed(0)
    print(f"device {ours.device}, torch threads {torch.get_num_threads()}, {len(channels)} channels, "
          f"{arguments.size} px, {arguments.steps} steps")
    print(f"{'layer':<10} {'library':<10} {'seconds':>8} {'steps/s':>8} {'channels/min':>13} {'final activation':>17}")
    for layer in arguments.layers:
        run_interpviz(ours, layer, channels, arguments.size, 2)
        runs = [("interpviz", *run_interpviz(ours, layer, channels, arguments.size, arguments.steps))]
        if not arguments.without_lucent:
            runs.append(("lucent", *run_lucent(theirs.module, ours.preprocess.normalize, layer, channels,
                                               arguments.size, arguments.steps)))
        for name, seconds, images in runs:
            activation = mean_channel_activation(ours, layer, channels, images)
            print(f"{layer:<10} {name:<10} {seconds:>8.1f} {arguments.steps / seconds:>8.2f} "
                  f"{len(channels) * 60 / seconds:>13.1f} {activation:>17.2f}")
        if not arguments.without_lucent:
            print(f"{layer:<10} speed-up of interpviz over lucent: {runs[1][1] / runs[0][1]:.2f}x")


if __name__ == "__main__":
    main()
