"""How much a truncated forward pass saves: forward_to(layer) against the full network, same process.

Run: .venv/bin/python benchmarks/forward_to.py  [--repeats N] [--batch B] [--size S] [--device cpu|cuda]
Prints, for several depths, the time of forward_to as a ratio of the full forward pass.
"""

import argparse
import time

import torch

from interpviz import models
from interpviz.hooks import forward_to


def best_time(function, repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls, after one warm-up call (waiting for the GPU to finish each)."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: interpviz's default device)")
    arguments = parser.parse_args()
    model = models.load("efficientnet_lite0", device=arguments.device)
    batch = torch.randn(arguments.batch, 3, arguments.size, arguments.size, device=model.device)
    with torch.no_grad():
        full = best_time(lambda: model(batch), arguments.repeats)
        print(f"device {model.device}, batch {arguments.batch} x {arguments.size} px, "
              f"torch threads {torch.get_num_threads()}")
        print(f"full forward: {full * 1000:.1f} ms (ratio 1.00)")
        for layer in ["stem", "blocks.2", "blocks.6", "blocks.10", "blocks.15", "head"]:
            truncated = best_time(lambda: forward_to(model, batch, layer), arguments.repeats)
            print(f"forward_to({layer!r}): {truncated * 1000:.1f} ms (ratio {truncated / full:.2f})")


if __name__ == "__main__":
    main()
