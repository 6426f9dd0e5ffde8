"""Chapter 07/08 helpers: ceilings from a dissection, several rotation seeds, both tails, networks side by side."""

import pytest
import torch
from torch import nn

from interpviz import experiments, models
from interpviz.broden import BrodenDataset
from interpviz.concepts import generate, read_ceilings
from interpviz.dissect import DissectionSettings, dissect

EXACT = DissectionSettings(exact=True, batch_size=8)


@pytest.fixture(scope="module")
def concept_set(tmp_path_factory):
    return BrodenDataset(generate(tmp_path_factory.mktemp("broden") / "set", count=32, size=32, seed=4, progress=False))


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
                           nn.ReLU()).eval()
    return models.wrap(module, "net")


def test_ceilings_from_a_dissection_match_the_generated_table(concept_set, network):
    result = dissect(network, concept_set, "3", EXACT, progress=False)["3"]
    ceilings = experiments.concept_ceilings(result, experiments.dissected_pixels(concept_set))
    table = {row.name: row.ceiling for row in read_ceilings(concept_set)}
    compared = 0
    for number, label in enumerate(result.labels):
        if number and label.name in table and float(result.concept_area[number]) > 0:
            assert float(ceilings[number]) == pytest.approx(table[label.name], abs=1e-3)
            compared += 1
    assert compared > 10
    assert float(ceilings[0]) == 0


def test_ceiling_ratio_is_the_mean_of_best_iou_over_ceiling(concept_set, network):
    result = dissect(network, concept_set, "3", EXACT, progress=False)["3"]
    pixels = experiments.dissected_pixels(concept_set)
    ceilings = experiments.concept_ceilings(result, pixels)
    present = ceilings > 0
    expected = (result.iou.double().max(dim=0).values[present] / ceilings[present]).mean()
    assert experiments.ceiling_ratio(result, pixels) == pytest.approx(float(expected))
    assert experiments.dissected_pixels(concept_set, limit=4) == 4 * 16 * 16


def test_rotation_sweeps_give_one_curve_per_seed_and_amount_zero_is_the_plain_dissection(concept_set, network):
    amounts = [0.0, 0.5, 1.0]
    sweeps = experiments.rotation_sweeps(network, concept_set, amounts, layer="3", seeds=[0, 1, 2], tails="both",
                                         settings=EXACT, progress=False)
    assert [sweep.seed for sweep in sweeps] == [0, 1, 2]
    assert all(len(sweep.unique_detectors_paper()) == len(amounts) for sweep in sweeps)
    plain = dissect(network, concept_set, "3", EXACT, progress=False)["3"]
    tolerance = 1e-4  # Q^0 = I up to rounding in the eigendecomposition
    for sweep in sweeps:
        assert (sweep.results[0].iou - plain.iou).abs().max() < tolerance
        clear = plain.clear_best(2 * tolerance)
        assert clear, "no unit has a clear best concept, so the labels were not compared"
        assert all(sweep.results[0].best()[unit].label == label.label for unit, label in clear.items())
    assert not torch.allclose(sweeps[0].results[2].iou, sweeps[1].results[2].iou)
    for sweep in sweeps:
        both = sweep.unique_detectors_both_tails()
        assert all(b >= top for b, top in zip(both, sweep.unique_detectors_paper()))
        assert both[0] == sweep.unique_detectors_paper()[0]  # a ReLU unit's bottom tail is its floor, not counted
        assert len(sweep.other_tail) == len(amounts)
        unsigned = sweep.unique_detectors_both_tails(signed_units=False)
        assert unsigned[0] == len(experiments.detected_concepts(sweep.results[0])
                                  | experiments.detected_concepts(sweep.other_tail[0]))
        assert unsigned[1:] == both[1:]


def test_the_other_tail_is_the_negative_direction(concept_set, network):
    sweep = experiments.rotation_sweep(network, concept_set, [1.0], layer="3", seed=3, tails="both",
                                       settings=EXACT, progress=False)
    turned = experiments.rotated_network(network, sweep.rotation, "3")
    negative = DissectionSettings(exact=True, batch_size=8, direction="negative")
    bottom = dissect(turned, concept_set, "3.1", negative, progress=False)["3.1"]
    torch.testing.assert_close(sweep.other_tail[0].iou, bottom.iou, atol=1e-5, rtol=0)


def test_one_tail_sweeps_refuse_the_both_tails_count(concept_set, network):
    sweep = experiments.rotation_sweep(network, concept_set, [0.0], layer="3", settings=EXACT, progress=False)
    with pytest.raises(ValueError, match="no other tail"):
        sweep.unique_detectors_both_tails()
    with pytest.raises(ValueError, match="tails"):
        experiments.rotation_sweeps(network, concept_set, [0.0], layer="3", tails="left", progress=False)


def test_dissect_networks_groups_networks_that_read_images_alike(concept_set, network):
    other = models.wrap(network.module, "normalised",
                        preprocess=models.Preprocessing(224, 224, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    results = experiments.dissect_networks({"plain": network, "normalised": other}, concept_set, ["1", "3"],
                                           EXACT, progress=False)
    assert list(results) == ["plain", "normalised"]
    for name, model in (("plain", network), ("normalised", other)):
        alone = dissect(model, concept_set, ["1", "3"], EXACT, progress=False)
        for layer in ("1", "3"):
            torch.testing.assert_close(results[name][layer].iou, alone[layer].iou, atol=1e-6, rtol=0)
    assert not torch.allclose(results["plain"]["3"].iou, results["normalised"]["3"].iou)


def test_curves_figure_draws_a_band_per_set_of_runs():
    figure = experiments.curves_figure([0, 0.5, 1], {"seeds": [[10, 8, 4], [12, 7, 5]], "one run": [[3, 3, 3]]},
                                       "unique detectors", "test")
    axis = figure.axes[0]
    assert len(axis.collections) == 2  # one band per set
    assert [text.get_text() for text in axis.get_legend().get_texts()] == ["seeds (mean of 2)", "one run (mean of 1)"]


def test_a_subset_of_units_is_rotated_among_itself(concept_set, network):
    subset = experiments.random_units(8, 4, seed=1)
    assert subset == sorted(set(subset)) and len(subset) == 4
    sweep = experiments.rotation_sweeps(network, concept_set, [0.0, 1.0], layer="3", seeds=[2], settings=EXACT,
                                        progress=False, units=subset)[0]
    plain = dissect(network, concept_set, "3", EXACT, progress=False)["3"]
    assert sweep.results[0].units == 4
    torch.testing.assert_close(sweep.results[0].iou, plain.iou[subset], atol=1e-6, rtol=0)
    assert sweep.rotation.shape == (4, 4)
    with pytest.raises(ValueError, match="at least 2 different"):
        experiments.rotation_sweeps(network, concept_set, [0.0], layer="3", units=[1, 1], progress=False)
    with pytest.raises(ValueError, match="count must be"):
        experiments.random_units(8, 9)
