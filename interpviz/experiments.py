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


def dissect_networks(networks: dict[str, nn.Module | LoadedModel], dataset: BrodenDataset, layers: str | list[str],
                     settings: DissectionSettings = DissectionSettings(), limit: int | None = None,
                     progress: bool = True) -> dict[str, dict[str, LayerDissection]]:
    """Dissect the same layers of every network on the same images: {network name: {layer: result}}."""
    results = {}
    for name, network in tqdm(networks.items(), desc="dissecting networks", disable=not progress):
        loaded = network if isinstance(network, LoadedModel) else smallcnn.as_loaded(network, name)
        results[name] = dissect(loaded, dataset, layers, settings, limit=limit, progress=False)
    return results


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
    """Dissections of a network's layer rotated by Q^a for each amount a, with Q drawn from ``seed``."""

    amounts: list[float]
    rotation: torch.Tensor
    layer: str
    results: list[LayerDissection]

    def unique_detectors(self, iou_threshold: float | None = None) -> list[int]:
        return [result.unique_detectors(iou_threshold) for result in self.results]

    def detectors(self, iou_threshold: float | None = None) -> list[int]:
        return [len(result.detectors(iou_threshold)) for result in self.results]

    def unique_detectors_paper(self, iou_threshold: float | None = None) -> list[int]:
        return [result.unique_detectors_summed(iou_threshold) for result in self.results]

    def by_category(self, iou_threshold: float | None = None) -> dict[str, list[int]]:
        """Unique detectors (the paper's count) per category, for every amount."""
        counts = [result.unique_detectors_by_category(iou_threshold) for result in self.results]
        return {category: [count.get(category, 0) for count in counts] for category in self.results[0].used_categories}

    def mean_best_iou(self) -> list[float]:
        """The mean over units of each unit's best IoU: a measure that does not depend on a cut-off."""
        return [sum(unit.iou for unit in result.best()) / result.units for result in self.results]


def rotated_network(model: smallcnn.SmallCNN | LoadedModel, rotation: torch.Tensor, layer: str = "conv5") -> LoadedModel:
    """The network with ``layer`` rotated: a SmallCNN with R^T folded into its classifier (the same function);
    any other model with the rotation inserted after the layer (for dissecting that layer only)."""
    if isinstance(model, smallcnn.SmallCNN):
        if layer != "conv5":
            raise ValueError(f"a SmallCNN is rotated at conv5 (the layer before its linear classifier), not {layer!r}")
        return smallcnn.as_loaded(smallcnn.rotated(model, rotation))
    return dataclasses.replace(model, module=with_rotated_output(model.module, model.layer(layer).name, rotation))


def rotation_sweep(model: smallcnn.SmallCNN | LoadedModel, dataset: BrodenDataset, amounts: list[float],
                   layer: str = "conv5", seed: int = 0, settings: DissectionSettings = DissectionSettings(),
                   limit: int | None = None, progress: bool = True) -> RotationSweep:
    """Dissect ``layer`` rotated by Q^a for every amount a, with one random rotation Q drawn from ``seed``."""
    channels = (model.classifier.in_features if isinstance(model, smallcnn.SmallCNN)
                else model.layer(layer).output_shape[0])
    rotation = random_rotation(channels, seed)
    results = []
    for amount in tqdm(amounts, desc="rotating and dissecting", disable=not progress):
        network = rotated_network(model, fractional_rotation(rotation, amount), layer)
        results.append(next(iter(dissect(network, dataset, layer, settings, limit=limit, progress=False).values())))
    return RotationSweep(list(amounts), rotation, layer, results)


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
