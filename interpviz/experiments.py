"""Network Dissection experiments: dissect several networks alike, count their detectors, compare labels.

The helpers behind chapters 07 and 08: one dissection per network with the same settings and images,
tables of detector counts, how many units share a concept, how units' labels change between two
dissections (training over time, fine-tuning), and the rotation experiment with its linear probe.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression
from torch import nn
from tqdm.auto import tqdm

from interpviz import smallcnn
from interpviz.broden import BrodenDataset
from interpviz.dissect import DissectionSettings, LayerDissection, dissect
from interpviz.models.zoo import LoadedModel
from interpviz.rotation import fractional_rotation, random_rotation, with_rotated_output
from interpviz.settings import model_device
from interpviz.side_by_side import dissect_directions, dissect_side_by_side


def dissect_networks(networks: dict[str, nn.Module | LoadedModel], dataset: BrodenDataset, layers: str | list[str],
                     settings: DissectionSettings = DissectionSettings(), limit: int | None = None,
                     progress: bool = True) -> dict[str, dict[str, LayerDissection]]:
    """Dissect the same layers of every network on the same images: {network name: {layer: result}}.

    Networks that read images alike and give the layers at the same sizes (a family of small CNNs, a
    network and its random-weight twin) are dissected side by side in one pass over the images
    (``interpviz.side_by_side``): each gets exactly what its own dissection would give, in a fraction of the time.
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    loaded = {name: network if isinstance(network, LoadedModel) else smallcnn.as_loaded(network, name)
              for name, network in networks.items()}
    groups: dict[tuple, dict[str, LoadedModel]] = {}
    for name, model in loaded.items():
        shapes = tuple(model.layer(layer).output_shape[1:] for layer in names)
        groups.setdefault((model.preprocess, shapes), {})[name] = model
    results = {}
    for group in tqdm(list(groups.values()), desc="dissecting networks side by side", disable=not progress):
        results.update(dissect_side_by_side(group, dataset, names, settings, limit=limit, progress=False))
    return {name: results[name] for name in networks}


def dissected_pixels(dataset: BrodenDataset, limit: int | None = None) -> int:
    """Segmentation pixels of the images a dissection with ``limit`` reads (the first ``limit`` images)."""
    rows = dataset.rows if limit is None else dataset.rows[:limit]
    return sum(row.segmentation_size[0] * row.segmentation_size[1] for row in rows)


def concept_ceilings(result: LayerDissection, pixels: int) -> torch.Tensor:
    """Per concept, the highest IoU any unit can reach: min(A, C) / max(A, C), where A = q x ``pixels`` is a
    unit's mask area and C the concept's area in the dissected images (0 for concepts not in them)."""
    mask_area = result.settings.quantile * pixels
    area = result.concept_area.double()
    ceilings = torch.minimum(area, torch.tensor(mask_area)) / torch.maximum(area, torch.tensor(mask_area))
    ceilings[0] = 0
    return torch.where(area > 0, ceilings, torch.zeros_like(ceilings))


def ceiling_ratio(result: LayerDissection, pixels: int) -> float:
    """A measure without a cut-off: for every concept present, the best unit's IoU divided by the concept's
    ceiling (``concept_ceilings``), averaged over concepts. 1 would mean every concept has a perfect unit."""
    ceilings = concept_ceilings(result, pixels)
    present = ceilings > 0
    best = result.iou.double().max(dim=0).values
    return float((best[present] / ceilings[present]).mean())


def detected_concepts(result: LayerDissection, iou_threshold: float | None = None) -> set[tuple[str, str]]:
    """(category, concept) pairs that some unit detects within the category: the paper's unique detectors."""
    threshold = result.settings.iou_threshold if iou_threshold is None else iou_threshold
    return {(category, unit.label) for category in result.used_categories
            for unit in result.best(category) if unit.iou > threshold}


def detector_table(results: dict[str, LayerDissection], iou_threshold: float | None = None) -> list[dict]:
    """One row per entry: units, detector units, both unique-detector counts, detectors per category."""
    rows = []
    for name, result in results.items():
        rows.append({"name": name, "units": result.units, "detectors": len(result.detectors(iou_threshold)),
                     "unique (Lite)": result.unique_detectors(iou_threshold),
                     "unique (paper)": result.unique_detectors_summed(iou_threshold),
                     **{f"{category} units": count for category, count in
                        result.detectors_by_category(iou_threshold).items()}})
    return rows


def table_html(rows: list[dict], digits: int = 3) -> str:
    """A plain HTML table of dict rows (the keys of all rows as columns), numbers rounded."""
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(value) -> str:
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    head = "".join(f"<th>{column}</th>" for column in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(row.get(column, ''))}</td>" for column in columns) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def units_per_concept(result: LayerDissection, iou_threshold: float | None = None) -> list[tuple[str, int]]:
    """Detector units per concept, most shared first: many units often detect the same concept."""
    counts = Counter(f"{unit.label} ({unit.category})" for unit in result.detectors(iou_threshold))
    return counts.most_common()


@dataclass(frozen=True)
class LabelChange:
    """One unit's best concept in two dissections of the same layer (None: not a detector)."""

    unit: int
    before: str | None
    after: str | None
    iou_before: float
    iou_after: float

    @property
    def kind(self) -> str:
        if self.before is None and self.after is None:
            return "never a detector"
        if self.before is None:
            return "became a detector"
        if self.after is None:
            return "lost its concept"
        return "kept its concept" if self.before == self.after else "changed concept"


def label_changes(before: LayerDissection, after: LayerDissection,
                  iou_threshold: float | None = None) -> list[LabelChange]:
    """For every unit, its label before and after (e.g. before and after fine-tuning)."""
    if before.units != after.units:
        raise ValueError(f"the layers differ in size: {before.units} and {after.units} units")
    threshold = before.settings.iou_threshold if iou_threshold is None else iou_threshold

    def name(unit) -> str | None:
        return f"{unit.label} ({unit.category})" if unit.iou > threshold else None

    return [LabelChange(old.unit, name(old), name(new), old.iou, new.iou)
            for old, new in zip(before.best(), after.best())]


def category_transitions(before: LayerDissection, after: LayerDissection,
                         iou_threshold: float | None = None) -> tuple[list[str], np.ndarray]:
    """Counts of units by (category before, category after); 'none' for units that are not detectors."""
    threshold = before.settings.iou_threshold if iou_threshold is None else iou_threshold
    names = before.used_categories + ["none"]
    matrix = np.zeros((len(names), len(names)), int)
    for old, new in zip(before.best(), after.best()):
        row = names.index(old.category) if old.iou > threshold else len(names) - 1
        column = names.index(new.category) if new.iou > threshold else len(names) - 1
        matrix[row, column] += 1
    return names, matrix


def transitions_figure(names: list[str], matrix: np.ndarray, before: str, after: str) -> Figure:
    """Heat map of units moving between categories from one dissection to another."""
    figure, axis = plt.subplots(figsize=(4.2, 3.6))
    axis.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center",
                  color="white" if count > matrix.max() / 2 else "black")
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel(f"category {after}")
    axis.set_ylabel(f"category {before}")
    figure.tight_layout()
    return figure


def counts_figure(values: dict[str, dict[str, float]], title: str, ylabel: str = "unique detectors") -> Figure:
    """Grouped bars: for each x entry (outer key), one bar per series (inner key)."""
    entries = list(values)
    series = list(dict.fromkeys(key for inner in values.values() for key in inner))
    figure, axis = plt.subplots(figsize=(max(4.0, 0.9 * len(entries) * max(len(series), 1) / 2 + 2.5), 3.0))
    width = 0.8 / max(len(series), 1)
    for index, name in enumerate(series):
        positions = np.arange(len(entries)) + (index - (len(series) - 1) / 2) * width
        axis.bar(positions, [values[entry].get(name, 0) for entry in entries], width, label=name)
    axis.set_xticks(range(len(entries)), entries)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    if len(series) > 1:
        axis.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    figure.tight_layout()
    return figure


@dataclass
class RotationSweep:
    """Dissections of a layer rotated by Q^a for each amount a, with Q drawn from ``seed``.

    ``other_tail`` (when asked for) holds the dissections of the same directions' bottom tails: a rotated
    direction has no preferred sign, so its most negative activations may be what it detects.
    """

    amounts: list[float]
    rotation: torch.Tensor
    layer: str
    results: list[LayerDissection]
    seed: int = 0
    other_tail: list[LayerDissection] = dataclasses.field(default_factory=list)

    def unique_detectors(self, iou_threshold: float | None = None) -> list[int]:
        return [result.unique_detectors(iou_threshold) for result in self.results]

    def detectors(self, iou_threshold: float | None = None) -> list[int]:
        return [len(result.detectors(iou_threshold)) for result in self.results]

    def unique_detectors_paper(self, iou_threshold: float | None = None) -> list[int]:
        return [result.unique_detectors_summed(iou_threshold) for result in self.results]

    def unique_detectors_both_tails(self, iou_threshold: float | None = None, signed_units: bool = True) -> list[int]:
        """The paper's count, where a concept counts when either tail of some direction detects it.

        ``signed_units=True`` (a layer after a ReLU-like activation): at amount 0 the directions are the
        units themselves, whose bottom tail is their floor (the positions where the activation is 0, a tie
        that covers most of the image), not the other end of a direction; there only the top tail counts.
        For a linear layer (``signed_units=False``) both tails count at every amount.
        """
        if len(self.other_tail) != len(self.results):
            raise ValueError("this sweep has no other tail; run rotation_sweep(..., tails='both')")
        return [len(detected_concepts(top, iou_threshold) | (set() if signed_units and amount == 0 else
                                                              detected_concepts(bottom, iou_threshold)))
                for amount, top, bottom in zip(self.amounts, self.results, self.other_tail)]

    def by_category(self, iou_threshold: float | None = None) -> dict[str, list[int]]:
        """Unique detectors (the paper's count) per category, for every amount."""
        counts = [result.unique_detectors_by_category(iou_threshold) for result in self.results]
        return {category: [count.get(category, 0) for count in counts] for category in self.results[0].used_categories}

    def mean_best_iou(self) -> list[float]:
        """The mean over units of each unit's best IoU: a measure that does not depend on a cut-off."""
        return [sum(unit.iou for unit in result.best()) / result.units for result in self.results]

    def ceiling_ratio(self, pixels: int) -> list[float]:
        """``ceiling_ratio`` at every amount (``pixels``: ``dissected_pixels`` of the dissected images)."""
        return [ceiling_ratio(result, pixels) for result in self.results]


def rotated_network(model: smallcnn.SmallCNN | LoadedModel, rotation: torch.Tensor, layer: str = "conv5") -> LoadedModel:
    """The network with ``layer`` rotated: a SmallCNN with R^T folded into its classifier (the same function);
    any other model with the rotation inserted after the layer (for dissecting that layer only)."""
    if isinstance(model, smallcnn.SmallCNN):
        if layer != "conv5":
            raise ValueError(f"a SmallCNN is rotated at conv5 (the layer before its linear classifier), not {layer!r}")
        return smallcnn.as_loaded(smallcnn.rotated(model, rotation))
    return dataclasses.replace(model, module=with_rotated_output(model.module, model.layer(layer).name, rotation))


def rotation_sweeps(model: smallcnn.SmallCNN | LoadedModel, dataset: BrodenDataset, amounts: list[float],
                    layer: str = "conv5", seeds: list[int] = (0,), tails: str = "top",
                    settings: DissectionSettings = DissectionSettings(), limit: int | None = None,
                    progress: bool = True, units: list[int] | None = None) -> list[RotationSweep]:
    """One ``RotationSweep`` per rotation seed: ``layer`` rotated by Q^a for every amount, Q drawn from the seed.

    Every rotated basis (and, with ``tails="both"``, its negative, the bottom tail) is dissected in one pass
    over the images (``interpviz.side_by_side.dissect_directions``); each gets what its own dissection of
    the rotated network would give. The rotations only change which directions are read, so a SmallCNN's
    conv5 is read in place (``rotated_network`` shows that folding keeps the function).

    ``units``: rotate only these units among themselves (Q acts on their span; the other units are not
    read). The cost of a dissection grows with the directions read, so a wide layer (EfficientNet-Lite0's
    ``head``: 1,280 units) is swept on a random subset; at a = 0 the subset's own units are dissected.
    """
    if tails not in ("top", "both"):
        raise ValueError(f"tails must be 'top' or 'both', got {tails!r}")
    if not amounts or not seeds:
        raise ValueError("give at least one amount and one rotation seed")
    loaded = model if isinstance(model, LoadedModel) else smallcnn.as_loaded(model)
    channels = loaded.layer(layer).output_shape[0]
    chosen = torch.arange(channels) if units is None else torch.as_tensor(list(units), dtype=torch.long)
    if chosen.numel() < 2 or chosen.unique().numel() != chosen.numel() or not 0 <= int(chosen.min()) <= int(chosen.max()) < channels:
        raise ValueError(f"units must be at least 2 different unit numbers from 0 to {channels - 1}")
    rotations = {seed: random_rotation(chosen.numel(), seed) for seed in seeds}
    directions = {}
    for seed, rotation in rotations.items():
        for index, amount in enumerate(amounts):
            turned = torch.zeros(chosen.numel(), channels, dtype=torch.float64)
            turned[:, chosen] = fractional_rotation(rotation, amount)
            directions[(seed, index, "top")] = turned
            if tails == "both":
                directions[(seed, index, "bottom")] = -turned
    results = dissect_directions(loaded, dataset, layer, directions, settings, limit=limit, progress=progress)
    return [RotationSweep(list(amounts), rotation, layer,
                          [results[(seed, index, "top")] for index in range(len(amounts))], seed,
                          [results[(seed, index, "bottom")] for index in range(len(amounts))] if tails == "both" else [])
            for seed, rotation in rotations.items()]


def rotation_sweep(model: smallcnn.SmallCNN | LoadedModel, dataset: BrodenDataset, amounts: list[float],
                   layer: str = "conv5", seed: int = 0, settings: DissectionSettings = DissectionSettings(),
                   limit: int | None = None, progress: bool = True, tails: str = "top") -> RotationSweep:
    """Dissect ``layer`` rotated by Q^a for every amount a, with one random rotation Q drawn from ``seed``."""
    return rotation_sweeps(model, dataset, amounts, layer, [seed], tails, settings, limit, progress)[0]


def random_units(channels: int, count: int, seed: int = 0) -> list[int]:
    """``count`` unit numbers of a layer of ``channels`` units, drawn without replacement from ``seed``, sorted."""
    if not 2 <= count <= channels:
        raise ValueError(f"count must be from 2 to {channels}, got {count}")
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(channels, generator=generator)[:count].tolist())


def curves_figure(amounts: list[float], curves: dict[str, np.ndarray], ylabel: str, title: str,
                  axis: plt.Axes | None = None, xlabel: str = "rotation amount a") -> Figure:
    """For each named set of runs (runs x amounts), the runs as thin lines and their mean with a band of one
    standard deviation: how much the seeds move the curve."""
    figure = axis.figure if axis is not None else plt.figure(figsize=(5.5, 3.2))
    axis = axis or figure.add_subplot()
    for (name, runs), colour in zip(curves.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        runs = np.asarray(runs, dtype=float)
        for run in runs:
            axis.plot(amounts, run, color=colour, alpha=0.25, linewidth=0.8)
        mean, std = runs.mean(axis=0), runs.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(runs.shape[1])
        axis.plot(amounts, mean, color=colour, marker="o", label=f"{name} (mean of {len(runs)})")
        axis.fill_between(amounts, mean - std, mean + std, color=colour, alpha=0.2)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    return figure


@torch.no_grad()
def pooled_features(model: smallcnn.SmallCNN, data: smallcnn.TaskData, batch_size: int = 200) -> torch.Tensor:
    """conv5 averaged over positions for every image of ``data``: (images, channels), in eval mode on the model's
    device; returned on the CPU."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    rows = [model.features(data.images[start : start + batch_size].to(device).float() / 255).mean(dim=(2, 3)).cpu()
            for start in range(0, len(data.images), batch_size)]
    model.train(was_training)
    return torch.cat(rows)


def linear_probe_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                          test_labels: torch.Tensor) -> float:
    """Test accuracy of an L2-regularized logistic regression on the features (no per-feature scaling, so a
    rotation of the features cannot change the optimum: the L2 penalty is rotation invariant)."""
    probe = LogisticRegression(C=1.0, max_iter=5000, tol=1e-8)
    probe.fit(train_features.double().numpy(), train_labels.numpy())
    return float(probe.score(test_features.double().numpy(), test_labels.numpy()))
