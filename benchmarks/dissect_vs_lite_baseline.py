"""Network Dissection throughput and peak memory: interpviz against a NetDissect-Lite-style baseline.

The baseline does what NetDissect-Lite does: it runs every image through the whole model and stores every
feature map (float64, as Lite's memmap does), takes each unit's quantile over the stored maps, then loops
over images and units in Python, skipping units whose map stays below the threshold (as Lite does), to
upsample, binarize and count intersections and unions. interpviz streams: two passes, all counts
accumulated per image with tensor operations, nothing kept per image in memory; the model runs once, its
layer outputs written to a temporary file for pass 2 (``--feature-file never`` runs it twice instead).

Each (method, number of images) runs in a fresh child process so that its peak memory can be read:
the peak resident memory above what the process held when the work began (/proc/self/clear_refs resets
the peak, /proc/self/status reports VmHWM; where the kernel forbids the reset, peak MiB is nan). With
--device cuda the GPU's peak allocation is reported too. Throughput is images per second over both passes.

Run: .venv/bin/python benchmarks/dissect_vs_lite_baseline.py [--images 200] [--layer blocks.4] [--device cuda]
     [--feature-file auto|always|never]
"""

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_memory() -> bool:
    """Reset the peak resident memory (VmHWM) and CUDA's peak; False where the kernel does not allow it."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def lite_style(model, dataset, layer: str, count: int, quantile: float, batch: int) -> tuple[np.ndarray, float]:
    """Store every feature map, quantile per unit, then loop per image and per unit; also the forward time.

    As NetDissect-Lite: the whole model runs with a hook on the layer (Lite cannot stop early), feature maps
    are stored as float64 on the CPU, and a unit whose map stays below its threshold in an image is skipped.
    """
    from interpviz.dissect import image_batch, concept_batch
    from interpviz.hooks import capture

    started = time.perf_counter()
    features = None
    with torch.no_grad(), capture(model, layer, detach=True) as recorded:
        for start in range(0, count, batch):
            indices = list(range(start, min(start + batch, count)))
            model.module(image_batch(model, dataset, indices))
            maps = recorded[layer].cpu().numpy()
            if features is None:
                features = np.zeros((count, *maps.shape[1:]), np.float64)
            features[start : start + len(indices)] = maps
    forward_seconds = time.perf_counter() - started
    units = features.shape[1]
    thresholds = np.quantile(features.transpose(1, 0, 2, 3).reshape(units, -1), 1 - quantile, axis=1)
    label_count = len(dataset.labels)
    categories = {name: i for i, name in enumerate(dataset.categories)}
    label_category = [categories.get(label.category, 0) for label in dataset.labels]
    intersection = np.zeros((units, label_count))
    unit_area = np.zeros((units, len(categories)))
    concept_area = np.zeros(label_count)
    for index in range(count):
        concepts = concept_batch(dataset, [index], categories)
        labels = concepts.labels.numpy()
        masks = concepts.masks[0].numpy()
        concept_area[labels] += masks.sum(axis=1)
        size = dataset.rows[index].segmentation_size
        present = np.nonzero(concepts.category_present[0].numpy())[0]
        for unit in range(units):
            if features[index, unit].max() < thresholds[unit]:
                continue
            upsampled = F.interpolate(torch.from_numpy(features[index, unit])[None, None], size=size,
                                      mode="bilinear", align_corners=False)[0, 0].numpy()
            active = (upsampled >= thresholds[unit]).reshape(-1)
            area = active.sum()
            for category in present:
                unit_area[unit, category] += area
            for column, label in enumerate(labels):
                intersection[unit, label] += np.logical_and(active, masks[column]).sum()
    union = unit_area[:, label_category] + concept_area[None] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0), forward_seconds


def streaming_forward_seconds(model, dataset, layer: str, count: int, feature_file: str) -> float:
    """Time of interpviz's forward passes alone (fast copy, same batches, as many passes), to split its total."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from interpviz.dissect import image_batch, use_feature_file
    from interpviz.hooks import forward_to
    from interpviz.speed import fast_copy, inference_batch_size

    batch = inference_batch_size(model, dataset.rows[0].image_size)
    fast = dataclasses.replace(model, module=fast_copy(model.module))
    with torch.no_grad():
        image_bytes = 4 * forward_to(fast, image_batch(fast, dataset, [0]), layer)[layer].numel()
        passes = 1 if use_feature_file(feature_file, count * image_bytes, Path(tempfile.gettempdir())) else 2
        started = time.perf_counter()
        for _ in range(passes):
            for start in range(0, count, batch):
                indices = list(range(start, min(start + batch, count)))
                forward_to(fast, image_batch(fast, dataset, indices), layer, detach=True)[layer].cpu()
    return time.perf_counter() - started


def child(method: str, count: int, layer: str, device: str, baseline_batch: int, feature_file: str) -> None:
    """Run one measurement and print it as JSON."""
    from interpviz import models
    from interpviz.concepts import synthetic_dataset
    from interpviz.dissect import DissectionSettings, dissect

    model = models.load("efficientnet_lite0", device=device)
    dataset = synthetic_dataset(progress=False)
    peak_was_reset = reset_peak_memory()
    before = status_kib("VmRSS")
    started = time.perf_counter()
    if method == "interpviz":
        settings = DissectionSettings(feature_file=feature_file)
        iou = dissect(model, dataset, layer, settings, limit=count, progress=False)[layer].iou.numpy()
        seconds = time.perf_counter() - started
        peak = status_kib("VmHWM")
        forward_seconds = streaming_forward_seconds(model, dataset, layer, count, feature_file)
    else:
        iou, forward_seconds = lite_style(model, dataset, layer, count, 0.005, baseline_batch)
        seconds = time.perf_counter() - started
        peak = status_kib("VmHWM")
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
    print(json.dumps({"method": method, "images": count, "seconds": seconds, "forward_seconds": forward_seconds,
                      "peak_mib": (peak - before) / 1024 if peak_was_reset else float("nan"),
                      "gpu_peak_mib": gpu_peak, "max_iou": float(iou[:, 1:].max())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--layer", default="blocks.4")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the model runs (the baseline loops on the CPU)")
    parser.add_argument("--baseline-batch", type=int, default=32, help="the baseline's batch size (Lite's default is 128)")
    parser.add_argument("--feature-file", default="auto", choices=["auto", "always", "never"],
                        help="interpviz's DissectionSettings.feature_file")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "COUNT"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child[0], int(arguments.child[1]), arguments.layer, arguments.device, arguments.baseline_batch,
              arguments.feature_file)
        return
    from interpviz.concepts import synthetic_dataset

    synthetic_dataset()
    runs = []
    for method in ("interpviz", "lite-style"):
        for count in (arguments.images, 4 * arguments.images):
            output = subprocess.run([sys.executable, __file__, "--layer", arguments.layer, "--device", arguments.device,
                                     "--baseline-batch", str(arguments.baseline_batch),
                                     "--feature-file", arguments.feature_file, "--child", method, str(count)],
                                    check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(output.strip().splitlines()[-1]))
    print(f"efficientnet_lite0 {arguments.layer} on {arguments.device}, synthetic concept set, "
          f"CPU threads {torch.get_num_threads()}, baseline batch {arguments.baseline_batch}, "
          f"feature file {arguments.feature_file}")
    print(f"{'method':<11} {'images':>6} {'seconds':>8} {'images/s':>9} {'forward s':>9} {'rest s':>7} "
          f"{'peak MiB':>9} {'GPU MiB':>8} {'max IoU':>8}")
    for run in runs:
        rest = run["seconds"] - run["forward_seconds"]
        print(f"{run['method']:<11} {run['images']:>6} {run['seconds']:>8.1f} {run['images'] / run['seconds']:>9.1f} "
              f"{run['forward_seconds']:>9.1f} {rest:>7.1f} {run['peak_mib']:>9.1f} {run['gpu_peak_mib']:>8.1f} "
              f"{run['max_iou']:>8.4f}")
    ours = {run["images"]: run for run in runs if run["method"] == "interpviz"}
    theirs = {run["images"]: run for run in runs if run["method"] == "lite-style"}
    for count in ours:
        ratio = (count / ours[count]["seconds"]) / (count / theirs[count]["seconds"])
        rest = (theirs[count]["seconds"] - theirs[count]["forward_seconds"]) / max(
            ours[count]["seconds"] - ours[count]["forward_seconds"], 1e-9)
        print(f"{count} images: interpviz throughput is {ratio:.1f}x the baseline's end to end; "
              f"outside the forward passes (thresholds and IoU) {rest:.1f}x")
    small, large = sorted(ours)
    print(f"peak memory from {small} to {large} images: interpviz x{ours[large]['peak_mib'] / ours[small]['peak_mib']:.2f}, "
          f"baseline x{theirs[large]['peak_mib'] / theirs[small]['peak_mib']:.2f}")


if __name__ == "__main__":
    main()
