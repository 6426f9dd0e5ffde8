"""Network Dissection: label units with concepts by the IoU of their top-activation masks with concept masks.

Two streaming passes over a Broden-format dataset, all requested layers at once, memory bounded by
(units x concepts), never by the number of images. The model runs once: pass 1 writes the layer outputs to
a temporary file that pass 2 reads back, batch by batch (``feature_file``; when the file would not fit, the
model runs again instead):

1. **Threshold.** For each unit k, T_k is the ceil(q N)-th largest activation over all N positions of all
   images, at the layer's own resolution (q = 0.005 by default). ``exact=True`` keeps the ceil(q N) largest
   values per unit (exact; memory grows with q N). The default keeps a 2048-bin histogram per unit whose
   range widens as needed: T_k is then approximate, off by at most one bin width, which is reported per
   unit as ``threshold_error``.
2. **IoU.** Each activation map is upsampled bilinearly to the segmentation size and binarized by the
   **mask rule**, the same in exact and histogram mode:
   - normally S_k >= T_k (the paper's formula; NetDissect-Lite uses >, which loses units whose top values
     tie, such as an indicator unit);
   - a *sparse* unit, one with fewer than ceil(q N) positions above its minimum m_k (a post-ReLU unit
     that fires rarely: the most selective kind), gets T_k = m_k and is masked where S_k > m_k, that is,
     where it fires. Both modes count the positions at the minimum exactly, so they agree on which units
     are sparse;
   - only a unit that is constant on the whole dataset gets an empty mask.
   **Ties at the top** (a unit saturated at ReLU6's 6.0) can make S_k >= T_k cover far more than q of
   the positions. Each unit's realized ``mask_fraction`` (the share of its positions, at the layer's
   resolution, that the rule selects) is recorded, and the report flags units above 2 q.
   ``ties="top_q"`` (with ``exact=True``) breaks such ties deterministically instead: of the positions
   equal to T_k, the first ones in dataset order (image, then row by row) are kept until exactly
   ceil(q N) positions are selected; the others count as just below T_k. The default ``ties="paper"``
   keeps every tie.
   Over the whole dataset, for every unit k and concept c:
   IoU(k, c) = sum |S_k & L_c| / sum |S_k or L_c|, where the union of an image is counted as
   |S_k| + |L_c| - |S_k & L_c|. Scalar concepts (scene, texture) cover the whole image.
   **Which images count |S_k|** for a concept of category C: with ``union_rule="present"`` (default, the
   original NetDissect) every image where category C is annotated at all; with ``"overlap"``
   (NetDissect-Lite) only images where the unit's mask touches a pixel annotated in C. Images without any
   annotation of C are left out of the union in both rules: there, the activation cannot be judged.

Bilinear upsampling never exceeds the largest value of the map it upsamples, so an (image, unit) pair
whose map stays below T_k has an empty mask and is skipped; at the top 0.5% most pairs are. On a CPU the
batches and the upsampled unit chunks are sized so that no tensor crosses ``interpviz.speed.LARGE_BLOCK_BYTES``
(above it every allocation is page-faulted afresh, which made the work 2-4x slower).

**Several processes** (``torchrun``, or any initialized ``torch.distributed`` process group): the batches are
shared out (rank r of N takes batches r, r + N, ...) and merged with collective operations
(``interpviz.distributed``), so that every process ends with what one process would compute on all images:
exact mode merges each unit's top values; histogram mode agrees on the range of every batch before counting
it (every process widens its histograms alike) and sums the counts; pass 2 sums intersections, unit and
concept areas and merges the top images. ``ties="top_q"`` follows dataset order and needs one process.

A unit is a detector of its best concept when that IoU exceeds 0.04. ``direction="negative"`` dissects the
bottom quantile instead (the unit's most negative activations).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from interpviz import distributed
from interpviz.broden import BrodenDataset, Label
from interpviz.hooks import forward_to, layer_path
from interpviz.images import to_tensor
from interpviz.models.zoo import LoadedModel
from interpviz.speed import LARGE_BLOCK_BYTES, fast_copy, inference_batch_size

HISTOGRAM_BINS = 2048
FEATURE_FILE_LIMIT = 4 * 2**30
FEATURE_FILE_CHOICES = ("auto", "always", "never")
TIE_RULES = ("paper", "top_q")


@dataclass(frozen=True)
class DissectionSettings:
    """Choices of a dissection; the defaults are the paper's."""

    quantile: float = 0.005
    iou_threshold: float = 0.04
    exact: bool = False
    union_rule: str = "present"
    direction: str = "positive"
    batch_size: int | None = None
    top_images: int = 8
    feature_file: str = "auto"
    ties: str = "paper"

    def __post_init__(self):
        if not 0 < self.quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile}")
        if not 0 <= self.iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in [0, 1] (an IoU), got {self.iou_threshold}")
        if self.top_images < 1:
            raise ValueError(f"top_images must be at least 1, got {self.top_images}")
        if self.union_rule not in ("present", "overlap"):
            raise ValueError(f"union_rule must be 'present' or 'overlap', got {self.union_rule!r}")
        if self.direction not in ("positive", "negative"):
            raise ValueError(f"direction must be 'positive' or 'negative', got {self.direction!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1 (or None to choose), got {self.batch_size}")
        if self.ties not in TIE_RULES:
            raise ValueError(f"ties must be one of {TIE_RULES}, got {self.ties!r}")
        if self.ties == "top_q" and not self.exact:
            raise ValueError("ties='top_q' needs exact thresholds: set exact=True as well")
        if self.feature_file not in FEATURE_FILE_CHOICES:
            raise ValueError(f"feature_file must be one of {FEATURE_FILE_CHOICES}, got {self.feature_file!r}")

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "positive" else -1.0


class ExactTopValues:
    """Exact streaming quantile from the top: keeps the m largest values per unit."""

    def __init__(self, units: int, keep: int):
        self.keep, self.units = keep, units
        self.values = torch.full((units, 0), float("-inf"))

    def add(self, values: torch.Tensor) -> None:
        merged = torch.cat([self.values, values], dim=1)
        self.values = merged.topk(min(self.keep, merged.shape[1]), dim=1).values

    def thresholds(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.values = distributed.merge_top_values(self.values, self.keep)
        return self.values[:, -1].clone(), torch.zeros(self.values.shape[0])


class HistogramTopValues:
    """Approximate streaming quantile: per-unit histograms whose range doubles when values fall outside.

    Under torchrun every process adds a batch at the same time (an empty one when it has run out) and all take
    the range of every process's batch, so that all histograms keep the same bin edges and add up.
    """

    def __init__(self, units: int, keep: int, bins: int = HISTOGRAM_BINS):
        self.keep, self.bins, self.units = keep, bins, units
        self.counts = torch.zeros(units, bins, dtype=torch.float64)
        self.low = torch.zeros(units, dtype=torch.float64)
        self.width = torch.zeros(units, dtype=torch.float64)
        self.started = False

    def _widen(self, below: torch.Tensor, above: torch.Tensor) -> None:
        rows = below | above
        merged = self.counts[rows].view(-1, self.bins // 2, 2).sum(dim=2)
        widened = torch.zeros(int(rows.sum()), self.bins, dtype=torch.float64)
        grow_down = below[rows]
        widened[~grow_down, : self.bins // 2] = merged[~grow_down]
        widened[grow_down, self.bins // 2 :] = merged[grow_down]
        self.counts[rows] = widened
        self.low[below] -= self.bins * self.width[below]
        self.width[rows] *= 2

    def add(self, values: torch.Tensor) -> None:
        values = values.double()
        if values.shape[1]:
            low, high = values.min(dim=1).values, values.max(dim=1).values
        else:
            low = torch.full((self.units,), math.inf, dtype=torch.float64)
            high = torch.full((self.units,), -math.inf, dtype=torch.float64)
        low, high = distributed.agree_range(low, high)
        if not self.started:
            self.low = low.clone()
            self.width = ((high - low) / self.bins * 1.0001).clamp_min(1e-12)
            self.started = True
        while True:
            below = low < self.low
            above = high >= self.low + self.bins * self.width
            if not (below.any() or above.any()):
                break
            self._widen(below, above & ~below)
        index = ((values - self.low[:, None]) / self.width[:, None]).long().clamp(0, self.bins - 1)
        offsets = torch.arange(values.shape[0])[:, None] * self.bins
        self.counts.view(-1).index_add_(0, (index + offsets).reshape(-1), torch.ones(index.numel(), dtype=torch.float64))

    def thresholds(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.counts = distributed.all_reduce(self.counts)
        from_top = self.counts.flip(1).cumsum(dim=1)
        bin_from_top = (from_top < self.keep).sum(dim=1).clamp(max=self.bins - 1)
        rows = torch.arange(self.counts.shape[0])
        before = torch.where(bin_from_top > 0, from_top[rows, (bin_from_top - 1).clamp_min(0)], torch.zeros(len(rows), dtype=torch.float64))
        in_bin = self.counts.flip(1)[rows, bin_from_top].clamp_min(1)
        upper_edge = self.low + (self.bins - bin_from_top) * self.width
        threshold = upper_edge - (self.keep - before) / in_bin * self.width
        return threshold.float(), self.width.float()


@dataclass
class ConceptBatch:
    """Concept masks of a batch of images, restricted to the labels present in it."""

    labels: torch.Tensor
    masks: torch.Tensor
    category_present: torch.Tensor
    category_pixels: torch.Tensor
    row_columns: list[torch.Tensor]
    """Per image, the columns of ``labels`` it shows (most of a batch's labels are absent from any one image)."""


def concept_batch(dataset: BrodenDataset, indices: Sequence[int], category_index: dict[str, int]) -> ConceptBatch:
    """Boolean masks (B, labels present, pixels) of every concept in the batch; scalar concepts are all-ones."""
    height, width = dataset.rows[indices[0]].segmentation_size
    per_image: list[dict[int, np.ndarray]] = []
    present = np.zeros((len(indices), len(category_index)), bool)
    category_pixels = np.zeros((len(indices), len(category_index), height * width), bool)
    for row_number, index in enumerate(indices):
        row = dataset.rows[index]
        if row.segmentation_size != (height, width):
            raise ValueError(f"image {index} has segmentation size {row.segmentation_size}, the batch {(height, width)}")
        masks: dict[int, np.ndarray] = {}
        for category, planes in dataset.load_masks(index).items():
            for plane in planes:
                flat = plane.reshape(-1)
                annotated = flat > 0
                if annotated.any():
                    present[row_number, category_index[category]] = True
                    category_pixels[row_number, category_index[category]] |= annotated
                for number in np.unique(flat[annotated]):
                    masks[int(number)] = masks.get(int(number), np.zeros_like(annotated)) | (flat == number)
        for category, numbers in row.scalars.items():
            present[row_number, category_index[category]] = True
            category_pixels[row_number, category_index[category]] = True
            for number in numbers:
                masks[number] = np.ones(height * width, bool)
        per_image.append(masks)
    labels = sorted({number for masks in per_image for number in masks})
    stacked = np.zeros((len(indices), len(labels), height * width), bool)
    for row_number, masks in enumerate(per_image):
        for column, number in enumerate(labels):
            if number in masks:
                stacked[row_number, column] = masks[number]
    row_columns = [torch.tensor([column for column, number in enumerate(labels) if number in masks], dtype=torch.long)
                   for masks in per_image]
    return ConceptBatch(torch.tensor(labels, dtype=torch.long), torch.from_numpy(stacked),
                        torch.from_numpy(present), torch.from_numpy(category_pixels), row_columns)


@dataclass(frozen=True)
class UnitLabel:
    """A unit's best concept in some category, with its IoU."""

    unit: int
    label: str
    category: str
    iou: float


@dataclass
class LayerDissection:
    """Dissection of one layer: thresholds, IoU per unit and concept, and each unit's top images."""

    layer: str
    settings: DissectionSettings
    labels: list[Label]
    categories: list[str]
    thresholds: torch.Tensor
    threshold_error: torch.Tensor
    iou: torch.Tensor
    intersection: torch.Tensor
    unit_area: torch.Tensor
    concept_area: torch.Tensor
    top_images: torch.Tensor
    top_values: torch.Tensor
    above_minimum: torch.Tensor | None = None
    mask_fraction: torch.Tensor | None = None
    label_category: torch.Tensor = field(init=False)

    def __post_init__(self):
        index = {name: i for i, name in enumerate(self.categories)}
        self.label_category = torch.tensor([index.get(label.category, -1) for label in self.labels])
        if self.above_minimum is None:
            self.above_minimum = torch.zeros(self.units, dtype=torch.bool)
        if self.mask_fraction is None:
            self.mask_fraction = torch.full((self.units,), float("nan"))

    def wide_masks(self, factor: float = 2.0) -> list[int]:
        """Units whose mask covers more than ``factor`` x q of their positions (ties at the top)."""
        return (self.mask_fraction > factor * self.settings.quantile).nonzero().flatten().tolist()

    @property
    def units(self) -> int:
        return self.iou.shape[0]

    def best(self, category: str | None = None) -> list[UnitLabel]:
        """Each unit's best concept (overall, or within ``category``)."""
        scores = self.iou.clone()
        scores[:, 0] = -1
        if category is not None:
            scores[:, self.label_category != self.categories.index(category)] = -1
        values, numbers = scores.max(dim=1)
        return [UnitLabel(unit, self.labels[n].name, self.labels[n].category, max(float(v), 0.0))
                for unit, (v, n) in enumerate(zip(values.tolist(), numbers.tolist()))]

    def best_margin(self) -> torch.Tensor:
        """Per unit, how far its best concept's IoU is above the second best's (a near-tie when small)."""
        scores = self.iou.clone()
        scores[:, 0] = -1
        top_two = scores.topk(2, dim=1).values.clamp_min(0)
        return top_two[:, 0] - top_two[:, 1]

    def clear_best(self, margin: float) -> dict[int, UnitLabel]:
        """Best concepts, by unit, of the units whose best beats their second best by more than ``margin``.

        Compare labels across runs only here: where two concepts nearly tie, the last bits of a float
        (another CPU, another batch size) can flip which one is best.
        """
        clear = self.best_margin() > margin
        return {unit.unit: unit for unit in self.best() if clear[unit.unit]}

    def detectors(self, iou_threshold: float | None = None) -> list[UnitLabel]:
        """Units whose best concept has IoU above the threshold (default: the settings' 0.04)."""
        threshold = self.settings.iou_threshold if iou_threshold is None else iou_threshold
        return [unit for unit in self.best() if unit.iou > threshold]

    def unique_detectors(self, iou_threshold: float | None = None) -> int:
        """NetDissect-Lite's count: distinct best concepts among detector units."""
        return len({(unit.category, unit.label) for unit in self.detectors(iou_threshold)})

    def unique_detectors_by_category(self, iou_threshold: float | None = None) -> dict[str, int]:
        """The paper's count, per category: distinct concepts among units whose best IoU in it is above threshold."""
        threshold = self.settings.iou_threshold if iou_threshold is None else iou_threshold
        counts = {}
        for category in self.categories:
            if not (self.label_category == self.categories.index(category)).any():
                continue
            counts[category] = len({unit.label for unit in self.best(category) if unit.iou > threshold})
        return counts

    def unique_detectors_summed(self, iou_threshold: float | None = None) -> int:
        """The paper's figure: ``unique_detectors_by_category`` summed over the categories."""
        return sum(self.unique_detectors_by_category(iou_threshold).values())

    def detectors_by_category(self, iou_threshold: float | None = None) -> dict[str, int]:
        """How many detector units have their best concept in each category."""
        counts = {category: 0 for category in self.categories}
        for unit in self.detectors(iou_threshold):
            counts[unit.category] += 1
        return {category: count for category, count in counts.items() if count or category in self.used_categories}

    @property
    def used_categories(self) -> list[str]:
        """Categories that have at least one concept."""
        return [c for i, c in enumerate(self.categories) if (self.label_category == i).any()]

    def write_tally(self, path: str | Path) -> Path:
        """tally.csv in NetDissect's column layout (units numbered from 1, sorted by IoU), plus a last column ``mask_fraction``."""
        path = Path(path)
        categories = self.used_categories
        columns = ["unit", "category", "label", "score"]
        for category in categories:
            columns += [f"{category}-label", f"{category}-truth", f"{category}-activation",
                        f"{category}-intersect", f"{category}-iou"]
        columns.append("mask_fraction")
        per_category = {category: self.best(category) for category in categories}
        rows = []
        for unit in sorted(self.best(), key=lambda u: -u.iou):
            row = {"unit": unit.unit + 1, "category": unit.category, "label": unit.label, "score": f"{unit.iou:.6f}",
                   "mask_fraction": f"{float(self.mask_fraction[unit.unit]):.6f}"}
            for category in categories:
                best = per_category[category][unit.unit]
                number = next(label.number for label in self.labels if label.name == best.label and label.category == category)
                row[f"{category}-label"] = best.label
                row[f"{category}-truth"] = int(self.concept_area[number])
                row[f"{category}-activation"] = int(self.unit_area[unit.unit, self.categories.index(category)])
                row[f"{category}-intersect"] = int(self.intersection[unit.unit, number])
                row[f"{category}-iou"] = f"{best.iou:.6f}"
            rows.append(row)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(rows)
        return path


def _batches(dataset: BrodenDataset, batch_size: int, limit: int | None, padded: bool = False) -> list[list[int]]:
    """This process's batches of image numbers: all of them alone, batches r, r + N, ... for rank r of N.

    ``padded`` adds an empty batch at the end where this process has one batch fewer than rank 0.
    """
    count = len(dataset) if limit is None else min(limit, len(dataset))
    batches = [list(range(start, min(start + batch_size, count))) for start in range(0, count, batch_size)]
    return distributed.shard(batches, padding=[] if padded else None)


class FeatureFile:
    """One layer's outputs, written batch by batch to a file and read back in the same order."""

    def __init__(self, path: Path):
        self.handle = open(path, "w+b")
        self.batch_shapes: collections.deque[tuple[int, ...]] = collections.deque()

    def write(self, outputs: torch.Tensor) -> None:
        self.batch_shapes.append(tuple(outputs.shape))
        self.handle.write(outputs.float().cpu().contiguous().numpy().data)

    def read(self) -> torch.Tensor:
        shape = self.batch_shapes.popleft()
        count = math.prod(shape)
        values = np.fromfile(self.handle, dtype=np.float32, count=count)
        if values.size != count:
            raise OSError(f"{self.handle.name} ended after {values.size} of {count} values")
        return torch.from_numpy(values).reshape(shape)


def use_feature_file(setting: str, needed_bytes: int, folder: Path) -> bool:
    """Whether pass 2 reads the layer outputs back from a file in ``folder`` instead of running the model again."""
    if setting == "never":
        return False
    free = shutil.disk_usage(folder).free
    if setting == "always" and needed_bytes > free:
        raise OSError(f"feature_file='always' needs {needed_bytes / 2**20:.0f} MiB in {folder}, where only "
                      f"{free / 2**20:.0f} MiB are free: point TMPDIR at a larger disk, or use feature_file='auto'")
    return setting == "always" or needed_bytes <= min(FEATURE_FILE_LIMIT, free // 2)


def image_batch(model: LoadedModel, dataset: BrodenDataset, indices: Sequence[int]) -> torch.Tensor:
    """Dataset images at their own size, normalised for the model, on its device."""
    batch = to_tensor([dataset.load_image(i) for i in indices])
    return model.preprocess.normalize(batch).to(model.device)


def binarize(values: torch.Tensor, threshold: torch.Tensor, above_minimum: torch.Tensor) -> torch.Tensor:
    """The mask rule: S > T where ``above_minimum`` (sparse units), S >= T elsewhere; arguments broadcast."""
    return torch.where(above_minimum, values > threshold, values >= threshold)


@dataclass
class UnitThresholds:
    """Pass 1's result for one layer: T_k, its error bound, the mask rule per unit, and top-q tie budgets."""

    value: torch.Tensor
    error: torch.Tensor
    above_minimum: torch.Tensor
    tie_budget: torch.Tensor | None = None


class MinimumCounter:
    """Streaming minimum, maximum and count of values equal to the minimum, per unit."""

    def __init__(self, flat: torch.Tensor):
        self.lowest, self.highest = flat.min(dim=1).values, flat.max(dim=1).values
        self.at_lowest = torch.zeros_like(self.lowest, dtype=torch.long)
        self.seen = 0

    def add(self, flat: torch.Tensor) -> None:
        batch_lowest = flat.min(dim=1).values
        at_batch_lowest = (flat == batch_lowest[:, None]).sum(dim=1)
        self.at_lowest = torch.where(batch_lowest < self.lowest, at_batch_lowest,
                                     self.at_lowest + torch.where(batch_lowest == self.lowest, at_batch_lowest, 0))
        self.lowest = torch.minimum(self.lowest, batch_lowest)
        self.highest = torch.maximum(self.highest, flat.max(dim=1).values)
        self.seen += flat.shape[1]

    def merge_processes(self) -> None:
        """Combine the counts of every process of a torchrun job (nothing changes in a single process)."""
        lowest = distributed.all_reduce(self.lowest, "min")
        self.at_lowest = distributed.all_reduce(torch.where(self.lowest == lowest, self.at_lowest, 0))
        self.lowest, self.highest = lowest, distributed.all_reduce(self.highest, "max")
        self.seen = int(distributed.all_reduce(torch.tensor(self.seen)))


def unit_thresholds(tracker: "ExactTopValues | HistogramTopValues", extremes: MinimumCounter,
                    ties: str) -> UnitThresholds:
    """Apply the mask rule of the module docstring to a tracker's thresholds."""
    value, error = tracker.thresholds()
    lowest = extremes.lowest
    sparse = extremes.seen - extremes.at_lowest < tracker.keep
    value = torch.where(sparse, lowest, torch.maximum(torch.minimum(value, extremes.highest), lowest))
    error = torch.where(sparse, torch.zeros_like(error), error)
    constant = extremes.highest <= lowest
    above_minimum = (value <= lowest) & ~constant
    value = torch.where(constant, torch.full_like(value, float("inf")), value)
    tie_budget = None
    if ties == "top_q":
        strictly_above = (tracker.values > value[:, None]).sum(dim=1)
        tie_budget = torch.where(above_minimum, 0, tracker.keep - strictly_above)
    return UnitThresholds(value, error, above_minimum, tie_budget)


def _break_ties(values: torch.Tensor, threshold: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
    """``ties="top_q"``: keep the first ``budget`` positions equal to T per unit (dataset order); lower the rest.

    ``budget`` (per unit) is reduced in place by the ties this batch used.
    """
    tied = (values == threshold[None, :, None, None]).transpose(0, 1).flatten(1)
    kept = tied & (tied.cumsum(dim=1) <= budget[:, None].to(values.device))
    budget -= torch.minimum(budget, tied.sum(dim=1).cpu())
    dropped = (tied & ~kept).view(values.shape[1], values.shape[0], *values.shape[2:]).transpose(0, 1)
    just_below = torch.nextafter(threshold, torch.full_like(threshold, float("-inf")))
    return torch.where(dropped, just_below[None, :, None, None], values)


def _threshold_pass(model: LoadedModel, dataset: BrodenDataset, names: list[str], settings: DissectionSettings,
                    count: int, limit: int | None, folder: Path, cleanup: contextlib.ExitStack,
                    progress: bool) -> tuple[dict[str, UnitThresholds], dict[str, FeatureFile]]:
    """Pass 1: each unit's threshold, error bound and mask rule; the layer outputs go to files when they fit."""
    trackers, extremes, stored = {}, {}, {}
    for batch_number, indices in enumerate(tqdm(_batches(dataset, settings.batch_size, limit, padded=True),
                                                 desc="dissect 1/2: thresholds", disable=not progress)):
        if not indices:
            for tracker in trackers.values():
                tracker.add(torch.empty(tracker.units, 0))
            continue
        activations = forward_to(model, image_batch(model, dataset, indices), names, detach=True)
        if batch_number == 0:
            image_bytes = sum(4 * activations[name][0].numel() for name in names)
            if use_feature_file(settings.feature_file, count * image_bytes, folder):
                for position, name in enumerate(names):
                    stored[name] = FeatureFile(folder / f"layer{position}.f32")
                    cleanup.callback(stored[name].handle.close)
        for name in names:
            outputs = activations[name].float().cpu()
            if stored:
                stored[name].write(outputs)
            flat = (settings.sign * outputs).transpose(0, 1).reshape(outputs.shape[1], -1)
            if name not in trackers:
                keep = math.ceil(settings.quantile * count * outputs[0, 0].numel())
                tracker_type = ExactTopValues if settings.exact else HistogramTopValues
                trackers[name] = tracker_type(outputs.shape[1], keep)
                extremes[name] = MinimumCounter(flat)
            trackers[name].add(flat)
            extremes[name].add(flat)
    for feature_file in stored.values():
        feature_file.handle.seek(0)
    for counter in extremes.values():
        counter.merge_processes()
    thresholds = {name: unit_thresholds(tracker, extremes[name], settings.ties) for name, tracker in trackers.items()}
    return thresholds, stored


def _iou_pass(model: LoadedModel, dataset: BrodenDataset, names: list[str], settings: DissectionSettings,
              limit: int | None, thresholds: dict[str, UnitThresholds],
              stored: dict[str, FeatureFile], progress: bool) -> tuple[dict[str, dict], torch.Tensor]:
    """Pass 2: per unit, intersections and counted areas with every concept, and the top images."""
    sign = settings.sign
    category_index = {name: i for i, name in enumerate(dataset.categories)}
    labels_count, categories_count = len(dataset.labels), len(dataset.categories)
    totals = {}
    for name in names:
        units = thresholds[name].value.numel()
        totals[name] = dict(
            intersection=torch.zeros(units, labels_count, dtype=torch.float64),
            unit_area=torch.zeros(units, categories_count, dtype=torch.float64),
            top_values=torch.full((units, 0), float("-inf")),
            top_images=torch.zeros((units, 0), dtype=torch.long),
            selected=torch.zeros(units, dtype=torch.float64),
            positions=0,
        )
    tie_budgets = {name: rule.tie_budget.clone() for name, rule in thresholds.items() if rule.tie_budget is not None}
    concept_area = torch.zeros(labels_count, dtype=torch.float64)
    for indices in tqdm(_batches(dataset, settings.batch_size, limit), desc="dissect 2/2: IoU",
                        disable=not progress):
        if stored:
            activations = {name: stored[name].read().to(model.device) for name in names}
        else:
            activations = forward_to(model, image_batch(model, dataset, indices), names, detach=True)
        concepts = concept_batch(dataset, indices, category_index)
        concept_area.index_add_(0, concepts.labels, concepts.masks.sum(dim=(0, 2)).double())
        row_concepts = [(concepts.labels[columns], concepts.masks[row, columns].to(model.device, torch.float32))
                        for row, columns in enumerate(concepts.row_columns)]
        segmentation_size = dataset.rows[indices[0]].segmentation_size
        units_per_chunk = max(1, LARGE_BLOCK_BYTES // (4 * math.prod(segmentation_size)))
        category_present = concepts.category_present.to(model.device, torch.float32)
        category_pixels = concepts.category_pixels.to(model.device, torch.float32)
        for name in names:
            values = sign * activations[name].float()
            threshold = thresholds[name].value.to(values.device)
            above_minimum = thresholds[name].above_minimum.to(values.device)
            if name in tie_budgets:
                values = _break_ties(values, threshold, tie_budgets[name])
            total = totals[name]
            total["selected"] += binarize(values, threshold[None, :, None, None],
                                          above_minimum[None, :, None, None]).sum(dim=(0, 2, 3)).double().cpu()
            total["positions"] += values.shape[0] * values[0, 0].numel()
            image_maxima = values.flatten(2).amax(dim=2).cpu()
            merged_values = torch.cat([total["top_values"], image_maxima.T], dim=1)
            merged_images = torch.cat([total["top_images"], torch.tensor(indices).expand(values.shape[1], -1)], dim=1)
            order = merged_values.topk(min(settings.top_images, merged_values.shape[1]), dim=1).indices
            total["top_values"] = merged_values.gather(1, order)
            total["top_images"] = merged_images.gather(1, order)
            reachable = binarize(image_maxima, threshold.cpu(), above_minimum.cpu())
            for row in range(len(indices)):
                reachable_units = reachable[row].nonzero().squeeze(1)
                if reachable_units.numel() == 0:
                    continue
                row_labels, row_masks = row_concepts[row]
                for units in reachable_units.split(units_per_chunk):
                    on_device = units.to(values.device)
                    upsampled = F.interpolate(values[row, on_device][None], size=segmentation_size,
                                              mode="bilinear", align_corners=False)[0]
                    masks = binarize(upsampled, threshold[on_device, None, None],
                                     above_minimum[on_device, None, None]).flatten(1).float()
                    total["intersection"][units[:, None], row_labels[None, :]] += (masks @ row_masks.T).double().cpu()
                    area = masks.sum(dim=1, keepdim=True)
                    if settings.union_rule == "present":
                        counted = area * category_present[row][None]
                    else:
                        counted = area * ((masks @ category_pixels[row].T) > 0)
                    total["unit_area"][units] += counted.double().cpu()
    return _merge_processes(totals, concept_area, settings.top_images)


def _merge_processes(totals: dict[str, dict], concept_area: torch.Tensor,
                     top_images: int) -> tuple[dict[str, dict], torch.Tensor]:
    """Pass 2's counts summed over every process of a torchrun job, and the top images of all (alone: unchanged)."""
    for total in totals.values():
        for key in ("intersection", "unit_area", "selected"):
            total[key] = distributed.all_reduce(total[key])
        total["positions"] = int(distributed.all_reduce(torch.tensor(total["positions"])))
        total["top_values"], total["top_images"] = distributed.merge_top_images(total["top_values"],
                                                                               total["top_images"], top_images)
    return totals, distributed.all_reduce(concept_area)


def _check_processes(settings: DissectionSettings, count: int) -> None:
    """Under torchrun: every process must have a batch of images, and ties="top_q" needs one process."""
    if settings.ties == "top_q":
        raise ValueError("ties='top_q' keeps tied positions in dataset order, which one process must see whole; "
                         "run it without torchrun")
    batch_sizes = distributed.all_gather(torch.tensor([settings.batch_size]))
    if any(int(size) != settings.batch_size for size in batch_sizes):
        raise ValueError(f"the processes chose different batch sizes ({[int(size) for size in batch_sizes]}); "
                         "give one with batch_size (--batch-size)")
    batches = math.ceil(count / settings.batch_size)
    if batches < distributed.world_size():
        raise ValueError(f"{count} images make {batches} batches of {settings.batch_size}, fewer than the "
                         f"{distributed.world_size()} processes: use fewer processes or a smaller batch size")


@torch.no_grad()
def dissect(model: LoadedModel, dataset: BrodenDataset, layers: str | Sequence[str],
            settings: DissectionSettings = DissectionSettings(), limit: int | None = None,
            progress: bool = True) -> dict[str, LayerDissection]:
    """Dissect ``layers`` of ``model`` on ``dataset`` (first ``limit`` images); one result per layer.

    The forward passes run on a private fast copy of the model (``interpviz.speed``); the model is not changed.
    ``settings.batch_size=None`` picks the batch with ``interpviz.speed.inference_batch_size``.
    ``settings.feature_file``: "auto" keeps the layer outputs in a temporary file (under ``TMPDIR``, deleted at
    the end, also after an error) when they take at most ``FEATURE_FILE_LIMIT`` bytes and half the free disk,
    so that the model runs once; "always" and "never" force the choice.
    """
    if isinstance(model, torch.nn.Module):
        raise TypeError("dissect needs a LoadedModel, which knows its preprocessing and layers; "
                        "wrap your module with models.wrap(module)")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a whole number of images, at least 1 (or None for all), got {limit!r}")
    names = [layers] if isinstance(layers, str) else list(layers)
    for name in names:
        model.layer(name)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise ValueError("the dataset has no images")
    if settings.batch_size is None:
        settings = dataclasses.replace(settings, batch_size=inference_batch_size(model, dataset.rows[0].image_size))
    if distributed.is_active():
        _check_processes(settings, count)
    model = dataclasses.replace(model, module=fast_copy(model.module, keep=[layer_path(model, n) for n in names]))
    sign = settings.sign

    with contextlib.ExitStack() as cleanup:
        folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="interpviz-dissect-")))
        thresholds, stored = _threshold_pass(model, dataset, names, settings, count, limit, folder, cleanup, progress)
        totals, concept_area = _iou_pass(model, dataset, names, settings, limit, thresholds, stored, progress)

    results = {}
    label_category = [dataset.categories.index(label.category) if label.category else 0 for label in dataset.labels]
    for name in names:
        total = totals[name]
        unit_area = total["unit_area"][:, label_category]
        union = unit_area + concept_area[None, :] - total["intersection"]
        iou = torch.where(union > 0, total["intersection"] / union.clamp_min(1e-12), torch.zeros_like(union)).float()
        results[name] = LayerDissection(
            layer=name, settings=settings, labels=dataset.labels, categories=dataset.categories,
            thresholds=sign * thresholds[name].value, threshold_error=thresholds[name].error, iou=iou,
            intersection=total["intersection"], unit_area=total["unit_area"], concept_area=concept_area,
            top_images=total["top_images"], top_values=sign * total["top_values"],
            above_minimum=thresholds[name].above_minimum, mask_fraction=(total["selected"] / total["positions"]).float(),
        )
    return results
