"""Dissection against a brute-force reference written plainly, and on planted detectors."""

import csv
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from interpviz import models
from interpviz.broden import BrodenDataset, Label
from interpviz.concepts import generate
from interpviz.dissect_report import write_layer_report
import interpviz.dissect
from interpviz.dissect import (DissectionSettings, FeatureFile, HistogramTopValues, LayerDissection, dissect,
                               use_feature_file)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return BrodenDataset(generate(tmp_path_factory.mktemp("broden") / "set", count=24, size=32, seed=1, progress=False))


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2, padding=1)).eval()
    return models.wrap(module, name="tiny")


def brute_force(model, dataset, layer, quantile, union_rule):
    """Loops and an exact sort, as plainly as possible."""
    maps = []
    for index in range(len(dataset)):
        image = torch.from_numpy(dataset.load_image(index)).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            maps.append(model.module[: int(layer) + 1](image)[0])
    maps = torch.stack(maps)
    units = maps.shape[1]
    keep = math.ceil(quantile * maps[:, 0].numel())
    thresholds, above_minimum = [], []
    for unit in range(units):
        values = sorted(maps[:, unit].flatten().tolist(), reverse=True)
        lowest = values[-1]
        sparse = sum(value > lowest for value in values) < keep
        if values[0] == lowest:
            thresholds.append(float("inf"))  # constant: empty mask
        else:
            thresholds.append(lowest if sparse else values[keep - 1])
        above_minimum.append(sparse)
    label_count = len(dataset.labels)
    intersection = np.zeros((units, label_count))
    unit_area = np.zeros((units, label_count))
    concept_area = np.zeros(label_count)
    for index in range(len(dataset)):
        row = dataset.rows[index]
        height, width = row.segmentation_size
        concept = {}
        annotated = {}
        for category, planes in dataset.load_masks(index).items():
            for plane in planes:
                annotated[category] = annotated.get(category, np.zeros((height, width), bool)) | (plane > 0)
                for number in np.unique(plane):
                    if number:
                        concept[int(number)] = concept.get(int(number), np.zeros((height, width), bool)) | (plane == number)
        for category, numbers in row.scalars.items():
            annotated[category] = np.ones((height, width), bool)
            for number in numbers:
                concept[number] = np.ones((height, width), bool)
        for number, mask in concept.items():
            concept_area[number] += mask.sum()
        upsampled = F.interpolate(maps[index : index + 1], size=(height, width), mode="bilinear", align_corners=False)[0]
        for unit in range(units):
            if above_minimum[unit]:
                active = (upsampled[unit] > thresholds[unit]).numpy()
            else:
                active = (upsampled[unit] >= thresholds[unit]).numpy()
            for number in range(1, label_count):
                category = dataset.labels[number].category
                if category not in annotated:
                    continue
                if union_rule == "overlap" and not (active & annotated[category]).any():
                    continue
                unit_area[unit, number] += active.sum()
                if number in concept:
                    intersection[unit, number] += (active & concept[number]).sum()
    union = unit_area + concept_area[None, :] - intersection
    iou = np.where(union > 0, intersection / np.maximum(union, 1e-12), 0)
    return torch.tensor(thresholds), iou


@pytest.mark.parametrize("feature_file", ["always", "never"])
@pytest.mark.parametrize("union_rule", ["present", "overlap"])
@pytest.mark.parametrize("layer", ["0", "1", "2"])
def test_matches_the_brute_force_reference(small_set, tiny_model, layer, union_rule, feature_file):
    settings = DissectionSettings(quantile=0.02, exact=True, union_rule=union_rule, batch_size=5,
                                  feature_file=feature_file)
    result = dissect(tiny_model, small_set, layer, settings, progress=False)[layer]
    thresholds, iou = brute_force(tiny_model, small_set, layer, 0.02, union_rule)
    assert torch.allclose(result.thresholds, thresholds, atol=1e-5)
    assert np.allclose(result.iou[:, 1:].numpy(), iou[:, 1:], atol=1e-5)
    assert result.iou[:, 1:].max() > 0


def test_units_upsampled_in_chunks_match_the_reference(small_set, tiny_model, monkeypatch):
    pixels = math.prod(small_set.rows[0].segmentation_size)
    monkeypatch.setattr(interpviz.dissect, "LARGE_BLOCK_BYTES", 2 * 4 * pixels)
    settings = DissectionSettings(quantile=0.02, exact=True, batch_size=5)
    result = dissect(tiny_model, small_set, "2", settings, progress=False)["2"]
    _, iou = brute_force(tiny_model, small_set, "2", 0.02, "present")
    assert np.allclose(result.iou[:, 1:].numpy(), iou[:, 1:], atol=1e-5)


def test_batch_size_is_chosen_when_not_given(small_set, tiny_model):
    chosen = dissect(tiny_model, small_set, "2", DissectionSettings(exact=True), progress=False)["2"]
    given = dissect(tiny_model, small_set, "2", DissectionSettings(exact=True, batch_size=3), progress=False)["2"]
    assert chosen.settings.batch_size == 32
    assert torch.allclose(chosen.iou, given.iou, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        DissectionSettings(batch_size=0)


def count_image_loads(dataset, monkeypatch) -> list[int]:
    loaded = []
    original = dataset.load_image

    def load_image(index):
        loaded.append(index)
        return original(index)

    monkeypatch.setattr(dataset, "load_image", load_image)
    return loaded


def test_feature_file_runs_the_model_once_and_gives_the_same_result(small_set, tiny_model, monkeypatch):
    loaded = count_image_loads(small_set, monkeypatch)
    once = dissect(tiny_model, small_set, ["0", "2"], DissectionSettings(batch_size=5), progress=False)
    assert sorted(loaded) == list(range(len(small_set)))
    loaded.clear()
    twice = dissect(tiny_model, small_set, ["0", "2"], DissectionSettings(batch_size=5, feature_file="never"),
                    progress=False)
    assert sorted(loaded) == sorted(2 * list(range(len(small_set))))
    for layer in ("0", "2"):
        assert torch.equal(once[layer].iou, twice[layer].iou)
        assert torch.equal(once[layer].top_images, twice[layer].top_images)


def test_feature_file_limit_makes_auto_run_the_model_again(small_set, tiny_model, monkeypatch):
    loaded = count_image_loads(small_set, monkeypatch)
    monkeypatch.setattr(interpviz.dissect, "FEATURE_FILE_LIMIT", 0)
    dissect(tiny_model, small_set, "2", DissectionSettings(batch_size=5), limit=10, progress=False)
    assert len(loaded) == 20


def test_feature_file_is_deleted_also_after_an_error(small_set, tiny_model, monkeypatch, tmp_path):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen_during_pass_2 = []

    def failing_concept_batch(*arguments):
        seen_during_pass_2.extend(path.name for path in tmp_path.rglob("*.f32"))
        raise RuntimeError("stop in pass 2")

    dissect(tiny_model, small_set, "2", DissectionSettings(batch_size=5), progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(interpviz.dissect, "concept_batch", failing_concept_batch)
    with pytest.raises(RuntimeError, match="stop in pass 2"):
        dissect(tiny_model, small_set, "2", DissectionSettings(batch_size=5), progress=False)
    assert seen_during_pass_2 == ["layer0.f32"]
    assert list(tmp_path.iterdir()) == []


def test_feature_file_reads_back_batches_of_different_shapes(tmp_path):
    batches = [torch.randn(3, 2, 4, 4), torch.randn(1, 2, 5, 6), torch.randn(2, 2, 4, 4)]
    feature_file = FeatureFile(tmp_path / "layer.f32")
    for batch in batches:
        feature_file.write(batch)
    feature_file.handle.seek(0)
    for batch in batches:
        assert torch.equal(feature_file.read(), batch)
    feature_file.batch_shapes.append((1, 2, 4, 4))
    with pytest.raises(OSError, match="ended after 0 of 32 values"):
        feature_file.read()
    feature_file.handle.close()


def test_feature_file_choice(tmp_path):
    assert use_feature_file("auto", 1000, tmp_path)
    assert not use_feature_file("never", 1000, tmp_path)
    assert not use_feature_file("auto", 10**18, tmp_path)
    with pytest.raises(OSError, match="TMPDIR"):
        use_feature_file("always", 10**18, tmp_path)
    with pytest.raises(ValueError, match="feature_file"):
        DissectionSettings(feature_file="sometimes")


def test_approximate_thresholds_stay_within_their_error_bound(small_set, tiny_model):
    exact = dissect(tiny_model, small_set, "2", DissectionSettings(exact=True, batch_size=7), progress=False)["2"]
    approximate = dissect(tiny_model, small_set, "2", DissectionSettings(batch_size=7), progress=False)["2"]
    assert ((approximate.thresholds - exact.thresholds).abs() <= approximate.threshold_error + 1e-6).all()
    assert (approximate.threshold_error > 0).all()


def test_histogram_quantile_widens_its_range():
    generator = torch.Generator().manual_seed(0)
    tracker = HistogramTopValues(units=2, keep=50, bins=64)
    batches = [torch.randn(2, 1000, generator=generator) * scale for scale in (0.1, 1.0, 10.0)]
    for batch in batches:
        tracker.add(batch)
    everything = torch.cat(batches, dim=1)
    exact = everything.topk(50, dim=1).values[:, -1]
    estimate, error = tracker.thresholds()
    assert tracker.counts.sum() == everything.numel()
    assert ((estimate - exact).abs() <= error + 1e-6).all()


class PlantedRed(nn.Module):
    """At half resolution (the masks' size): unit 0 is 1 where a pixel is red, else 0; unit 1 is constant;
    unit 2 is noise."""

    def forward(self, images):
        images = images[:, :, ::2, ::2]
        red = ((images[:, 0] > 0.6) & (images[:, 1] < 0.35) & (images[:, 2] < 0.35)).float()
        noise = torch.rand(images[:, 0].shape, generator=torch.Generator().manual_seed(0))
        return torch.stack([red, torch.ones_like(red), noise], dim=1)


@pytest.fixture(scope="module")
def colourful_set(tmp_path_factory):
    return BrodenDataset(generate(tmp_path_factory.mktemp("broden") / "colourful", count=80, size=64, seed=2, progress=False))


@pytest.mark.parametrize("exact", [True, False])
def test_planted_red_detector_is_found_and_constant_unit_is_not(colourful_set, exact):
    model = models.wrap(nn.Sequential(PlantedRed()), name="planted")
    result = dissect(model, colourful_set, "0", DissectionSettings(exact=exact), progress=False)["0"]
    red, constant, noise = result.best()
    assert (red.label, red.category) == ("red", "color") and red.iou > 0.9
    assert constant.iou == 0 and constant not in result.detectors()
    assert noise.iou < 0.04
    assert [unit.unit for unit in result.detectors()] == [0]


def test_negative_direction_finds_the_inverted_unit(colourful_set):
    inverted = nn.Sequential(PlantedRed(), nn.Identity())
    model = models.wrap(nn.Sequential(_Negate(inverted)), name="negated")
    positive = dissect(model, colourful_set, "0", DissectionSettings(), progress=False)["0"]
    negative = dissect(model, colourful_set, "0", DissectionSettings(direction="negative"), progress=False)["0"]
    assert negative.best()[0].label == "red" and negative.best()[0].iou > 0.9
    assert positive.best()[0].iou < negative.best()[0].iou


class _Negate(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, images):
        return -self.inner(images)


def test_counts_tally_and_settings(small_set, tiny_model, tmp_path):
    result = dissect(tiny_model, small_set, "2", DissectionSettings(iou_threshold=0.0), progress=False)["2"]
    assert len(result.detectors(0.0)) == sum(result.detectors_by_category(0.0).values())
    assert result.unique_detectors_summed(0.0) == sum(result.unique_detectors_by_category(0.0).values())
    assert result.unique_detectors(0.0) <= result.unique_detectors_summed(0.0)
    assert result.unique_detectors_summed(1.1) == 0
    assert result.detectors(1.1) == [] and result.unique_detectors(1.1) == 0
    lines = result.write_tally(tmp_path / "tally.csv").read_text().splitlines()
    assert lines[0].startswith("unit,category,label,score,color-label,color-truth,color-activation,color-intersect,color-iou")
    assert len(lines) == 1 + result.units
    scores = [float(line.split(",")[3]) for line in lines[1:]]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(ValueError, match="union_rule"):
        DissectionSettings(union_rule="any")
    with pytest.raises(ValueError, match="quantile"):
        DissectionSettings(quantile=0)


def test_top_images_are_the_most_activating(small_set, tiny_model):
    result = dissect(tiny_model, small_set, "2", DissectionSettings(top_images=3, batch_size=5), progress=False)["2"]
    maxima = []
    for index in range(len(small_set)):
        image = torch.from_numpy(small_set.load_image(index)).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            maxima.append(tiny_model.module(image)[0].flatten(1).amax(dim=1))
    maxima = torch.stack(maxima)
    assert torch.equal(result.top_images, maxima.topk(3, dim=0).indices.T)


def test_dissect_arguments_are_checked_before_any_work(small_set, tiny_model):
    for limit in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="limit must be a whole number of images, at least 1"):
            dissect(tiny_model, small_set, "2", limit=limit, progress=False)
    for threshold in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"iou_threshold must be in \[0, 1\]"):
            DissectionSettings(iou_threshold=threshold)
    with pytest.raises(ValueError, match="top_images must be at least 1"):
        DissectionSettings(top_images=0)
    with pytest.raises(TypeError, match="wrap your module with models.wrap"):
        dissect(tiny_model.module, small_set, "2", progress=False)


def test_clear_best_leaves_out_near_ties():
    labels = [Label(0, "-", "", 0, 0.0), Label(1, "red", "color", 1, 0.1), Label(2, "blue", "color", 1, 0.1)]
    iou = torch.tensor([[0.0, 0.30, 0.10], [0.0, 0.200, 0.199], [0.0, 0.0, 0.0]])
    zeros = torch.zeros(3, 3)
    result = LayerDissection(layer="x", settings=DissectionSettings(), labels=labels, categories=["color"],
                             thresholds=torch.zeros(3), threshold_error=torch.zeros(3), iou=iou,
                             intersection=zeros, unit_area=zeros, concept_area=torch.zeros(3),
                             top_images=torch.zeros(3, 1, dtype=torch.long), top_values=torch.zeros(3, 1))
    assert torch.allclose(result.best_margin(), torch.tensor([0.2, 0.001, 0.0]))
    assert {unit: label.label for unit, label in result.clear_best(0.01).items()} == {0: "red"}


class PlantedTies(nn.Module):
    """At half resolution: unit 0 fires (positive, distinct values) at 0.2% of positions and is 0 elsewhere;
    unit 1 saturates at 6.0 on the top tenth of every image; unit 2 is noise; unit 3 is constant."""

    def forward(self, images):
        batch, _, height, width = images[:, :, ::2, ::2].shape
        generator = torch.Generator().manual_seed(0)
        position = torch.arange(height * width).view(height, width).expand(batch, -1, -1)
        sparse = torch.where(position % 500 == 7, 1 + torch.rand(batch, height, width, generator=generator), 0.0)
        saturated = 5 * torch.rand(batch, height, width, generator=generator)
        saturated[:, : height // 10] = 6.0
        noise = torch.randn(batch, height, width, generator=generator)
        return torch.stack([sparse, saturated, noise, torch.ones_like(noise)], dim=1)


@pytest.fixture(scope="module")
def ties_set(tmp_path_factory):
    return BrodenDataset(generate(tmp_path_factory.mktemp("broden") / "ties", count=12, size=224, seed=3,
                                  progress=False))


def test_a_sparse_unit_is_masked_where_it_fires_in_both_modes(ties_set):
    model = models.wrap(nn.Sequential(PlantedTies()), name="ties")
    exact = dissect(model, ties_set, "0", DissectionSettings(exact=True), progress=False)["0"]
    histogram = dissect(model, ties_set, "0", DissectionSettings(exact=False), progress=False)["0"]
    fires = ((torch.arange(112 * 112) % 500) == 7).float().mean()
    for result in (exact, histogram):
        assert result.thresholds[0] == 0 and result.above_minimum.tolist() == [True, False, False, False]
        assert result.mask_fraction[0] == pytest.approx(float(fires))
        assert result.unit_area[0].sum() > 0 and result.iou[0].max() > 0
        assert result.thresholds[3] == float("inf") and result.unit_area[3].sum() == 0  # constant: empty
    assert torch.allclose(exact.iou[0], histogram.iou[0])


def test_ties_at_the_top_are_reported_and_top_q_keeps_exactly_the_quantile(ties_set, tmp_path):
    model = models.wrap(nn.Sequential(PlantedTies()), name="ties")
    paper = dissect(model, ties_set, "0", DissectionSettings(exact=True), progress=False)["0"]
    assert paper.thresholds[1] == 6.0
    assert paper.mask_fraction[1] == pytest.approx(11 / 112, abs=1e-6)  # every saturated row
    assert paper.wide_masks() == [1]
    tally = list(csv.DictReader(paper.write_tally(tmp_path / "tally.csv").open()))
    assert {int(row["unit"]): float(row["mask_fraction"]) for row in tally}[2] == pytest.approx(
        float(paper.mask_fraction[1]), abs=1e-6)
    page = write_layer_report(model, ties_set, paper, tmp_path, images_per_unit=1).read_text()
    assert page.count("(ties)") == 1 and "1 units (marked 'ties')" in page
    top_q = dissect(model, ties_set, "0", DissectionSettings(exact=True, ties="top_q"), progress=False)["0"]
    positions = len(ties_set) * 112 * 112
    assert top_q.mask_fraction[1] * positions == pytest.approx(math.ceil(0.005 * positions), abs=1e-3)
    assert top_q.wide_masks() == [] and top_q.unit_area[1].sum() < paper.unit_area[1].sum() / 5
    assert torch.equal(top_q.iou[[0, 2, 3]], paper.iou[[0, 2, 3]])
    with pytest.raises(ValueError, match="needs exact thresholds"):
        DissectionSettings(ties="top_q")
    with pytest.raises(ValueError, match="ties must be one of"):
        DissectionSettings(ties="random")
