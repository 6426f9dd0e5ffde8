"""Several processes against one: dissection split over images, the feature atlas split over channels.

Two configurations of the same work, measured in one run of this script:
- on a CPU: 1 process x P threads against P processes x 1 thread (P = --processes, default 2: this
  machine's cores), so both use every core;
- on GPUs (--device cuda): 1 process on one GPU against P processes on P GPUs.
Both configurations start the same way, with torchrun (``python -m torch.distributed.run --standalone``), in
fresh processes. "work s" is rank 0's time from a barrier after the model and the data are loaded to a barrier
after the last process has finished; "command s" is the whole command, start-up of Python and torch included.

1. Dissection of --images synthetic concept images (default 400) at one EfficientNet-Lite0 layer (--layer,
   default head), exact thresholds; the script also checks that both configurations give the same
   thresholds and IoUs.
2. Atlas: every channel of --atlas-layer (default blocks.1.depthwise.act, 96 channels) at --size px (128) for
   --steps steps (64), --atlas-batch channels per render (8); the throughput is channels per minute of work.

Run: .venv/bin/python benchmarks/distributed.py [--processes 2] [--images 400] [--layer head]
     [--device cuda --processes $(nvidia-smi -L | wc -l) --tasks dissect]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def work(arguments: argparse.Namespace) -> None:
    """One process of a configuration (started by torchrun): load, wait for all, do the task, wait for all."""
    from interpviz import distributed, models
    from interpviz.concepts import synthetic_dataset

    with distributed.process_group():
        with distributed.rank_zero_first():
            model = models.load("efficientnet_lite0", device=distributed.device() or arguments.device)
            dataset = synthetic_dataset(count=arguments.images, progress=False)
        distributed.barrier()
        started = time.perf_counter()
        if arguments.task == "dissect":
            from interpviz.dissect import DissectionSettings, dissect

            settings = DissectionSettings(exact=True, batch_size=arguments.batch_size)
            result = dissect(model, dataset, arguments.layer, settings, progress=False)[arguments.layer]
            saved = {"thresholds": result.thresholds, "iou": result.iou}
        else:
            from interpviz.atlas import AtlasSettings, write_atlas

            settings = AtlasSettings(size=arguments.size, steps=arguments.steps, batch=arguments.atlas_batch)
            write_atlas(model, [arguments.atlas_layer], arguments.out, settings, progress=False)
            saved = {"channels": model.layer(arguments.atlas_layer).channels}
        distributed.barrier()
        if distributed.is_main():
            torch.save({**saved, "seconds": time.perf_counter() - started}, arguments.result)


def launch(arguments: argparse.Namespace, task: str, processes: int, folder: Path) -> dict:
    """Run ``task`` in ``processes`` fresh processes under torchrun; rank 0's results, plus the command's time."""
    threads = 1 if processes > 1 or arguments.device == "cuda" else arguments.processes
    result = folder / f"{task}-{processes}.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               __file__, "--task", task, "--result", str(result), "--out", str(folder / f"atlas-{processes}"),
               "--images", str(arguments.images), "--layer", arguments.layer, "--batch-size", str(arguments.batch_size),
               "--atlas-layer", arguments.atlas_layer, "--size", str(arguments.size), "--steps", str(arguments.steps),
               "--atlas-batch", str(arguments.atlas_batch), "--device", arguments.device]
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return {**torch.load(result), "command": time.perf_counter() - started, "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--layer", default="head")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--atlas-layer", default="blocks.1.depthwise.act")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--atlas-batch", type=int, default=8)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--tasks", default="dissect,atlas", help="dissect, atlas or both (the atlas needs "
                        "ipywidgets and scikit-image, which a bare GPU machine may lack)")
    parser.add_argument("--task", choices=["dissect", "atlas"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.task:
        work(arguments)
        return
    from interpviz.concepts import synthetic_dataset

    synthetic_dataset(count=arguments.images)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, device {arguments.device}, "
          f"{arguments.processes} processes; 1-process run: {1 if arguments.device == 'cuda' else arguments.processes} "
          "threads")
    with tempfile.TemporaryDirectory(prefix="interpviz-bench-") as folder:
        for task in arguments.tasks.split(","):
            one = launch(arguments, task, 1, Path(folder))
            many = launch(arguments, task, arguments.processes, Path(folder))
            print(f"\n{task}: 1 process x {one['threads']} threads: work {one['seconds']:.1f} s, "
                  f"command {one['command']:.1f} s; {arguments.processes} processes x {many['threads']} thread: "
                  f"work {many['seconds']:.1f} s, command {many['command']:.1f} s")
            print(f"{task}: speed-up of {arguments.processes} processes: work {one['seconds'] / many['seconds']:.2f}x, "
                  f"command {one['command'] / many['command']:.2f}x")
            if task == "dissect":
                threshold_gap = (one["thresholds"] - many["thresholds"]).abs().nan_to_num().max()
                iou_gap = (one["iou"] - many["iou"]).abs().max()
                print(f"dissect: {arguments.images} images, layer {arguments.layer}; largest difference between the "
                      f"two: threshold {threshold_gap:.2g}, IoU {iou_gap:.2g} (0 and 0 with the same threads per "
                      "process; otherwise the convolutions add in another order)")
            else:
                for label, run in ((f"1x{one['threads']}", one), (f"{arguments.processes}x1", many)):
                    print(f"atlas: {label}: {run['channels'] / run['seconds'] * 60:.1f} channels per minute "
                          f"({run['channels']} channels of {arguments.atlas_layer}, {arguments.size} px, "
                          f"{arguments.steps} steps)")


if __name__ == "__main__":
    main()
