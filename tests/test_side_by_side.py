"""Side-by-side dissection gives every network, and every set of directions, what its own dissection gives."""

import pytest
import torch
from torch import nn

from interpviz import models
from interpviz.broden import BrodenDataset
from interpviz.concepts import generate
from interpviz.dissect import DissectionSettings, dissect
from interpviz.rotation import random_rotation, with_rotated_output
from interpviz.side_by_side import dissect_directions, dissect_side_by_side, split_units

EXACT = DissectionSettings(exact=True, batch_size=8)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return BrodenDataset(generate(tmp_path_factory.mktemp("broden") / "set", count=24, size=32, seed=3, progress=False))


def network(seed: int, width: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU()).eval()


def assert_same(together, alone):
    assert together.units == alone.units
    torch.testing.assert_close(together.thresholds, alone.thresholds)
    torch.testing.assert_close(together.iou, alone.iou, atol=1e-6, rtol=0)
    torch.testing.assert_close(together.mask_fraction, alone.mask_fraction)
    torch.testing.assert_close(together.top_values, alone.top_values)
    assert torch.equal(together.above_minimum, alone.above_minimum)


def test_networks_side_by_side_get_their_own_dissections(small_set):
    networks = {"narrow": network(0, 3), "wide": network(1, 5), "narrow again": network(2, 3)}
    together = dissect_side_by_side(networks, small_set, ["1", "3"], EXACT, progress=False)
    assert list(together) == list(networks)
    for name, module in networks.items():
        alone = dissect(models.wrap(module, name), small_set, ["1", "3"], EXACT, progress=False)
        for layer in ("1", "3"):
            assert together[name][layer].layer == layer
            assert_same(together[name][layer], alone[layer])


def test_networks_that_read_images_differently_are_refused(small_set):
    plain = models.wrap(network(0, 3), "plain")
    normalised = models.wrap(network(0, 3), "normalised",
                             preprocess=models.Preprocessing(224, 224, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)))
    with pytest.raises(ValueError, match="reads images differently"):
        dissect_side_by_side({"plain": plain, "normalised": normalised}, small_set, "1", EXACT, progress=False)


def test_directions_of_a_layer_match_dissections_of_the_rotated_layer(small_set):
    model = models.wrap(network(0, 4), "net")
    rotation = random_rotation(8, seed=5)
    together = dissect_directions(model, small_set, "3", {"units": torch.eye(8), "rotated": rotation,
                                                          "other tail": -rotation}, EXACT, progress=False)
    assert_same(together["units"], dissect(model, small_set, "3", EXACT, progress=False)["3"])
    turned = models.wrap(with_rotated_output(model.module, "3", rotation), "turned")
    assert_same(together["rotated"], dissect(turned, small_set, "3.1", EXACT, progress=False)["3.1"])
    negative = DissectionSettings(exact=True, batch_size=8, direction="negative")
    other_tail = dissect(turned, small_set, "3.1", negative, progress=False)["3.1"]
    torch.testing.assert_close(together["other tail"].iou, other_tail.iou, atol=1e-6, rtol=0)
    torch.testing.assert_close(together["other tail"].thresholds, -other_tail.thresholds)


def test_directions_must_have_one_column_per_channel(small_set):
    model = models.wrap(network(0, 4), "net")
    with pytest.raises(ValueError, match="8 columns"):
        dissect_directions(model, small_set, "3", {"bad": torch.eye(4)}, EXACT, progress=False)
    with pytest.raises(ValueError, match="no directions"):
        dissect_directions(model, small_set, "3", {}, EXACT, progress=False)


def test_split_units_checks_the_sizes(small_set):
    result = dissect(models.wrap(network(0, 3), "net"), small_set, "1", EXACT, progress=False)["1"]
    parts = split_units(result, {"a": 1, "b": 2})
    assert parts["a"].units == 1 and parts["b"].units == 2
    assert torch.equal(parts["b"].iou, result.iou[1:])
    with pytest.raises(ValueError, match="4 units in all, the dissection 3"):
        split_units(result, {"a": 2, "b": 2})
