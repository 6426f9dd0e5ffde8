import pytest
import torch
from torch import nn

from interpviz.rotation import ChannelRotation, fold_into_linear, fractional_rotation, random_rotation, with_rotated_output


@pytest.fixture(scope="module")
def rotation():
    return random_rotation(12, seed=3)


def test_random_rotation_is_a_seeded_proper_rotation(rotation):
    assert torch.allclose(rotation @ rotation.T, torch.eye(12, dtype=torch.float64), atol=1e-10)
    assert torch.linalg.det(rotation) == pytest.approx(1.0)
    assert torch.equal(rotation, random_rotation(12, seed=3))
    assert not torch.equal(rotation, random_rotation(12, seed=4))
    with pytest.raises(ValueError, match="at least 2"):
        random_rotation(1)


@pytest.mark.parametrize("amount", [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
def test_fractional_rotations_stay_orthogonal(rotation, amount):
    power = fractional_rotation(rotation, amount)
    assert torch.allclose(power @ power.T, torch.eye(12, dtype=torch.float64), atol=1e-8)
    assert torch.linalg.det(power) == pytest.approx(1.0, abs=1e-8)


def test_endpoints_and_composition(rotation):
    assert torch.allclose(fractional_rotation(rotation, 0.0), torch.eye(12, dtype=torch.float64), atol=1e-8)
    assert torch.allclose(fractional_rotation(rotation, 1.0), rotation, atol=1e-8)
    quarter, half = fractional_rotation(rotation, 0.25), fractional_rotation(rotation, 0.5)
    assert torch.allclose(quarter @ quarter, half, atol=1e-8)
    assert torch.allclose(half @ half, rotation, atol=1e-8)


def test_folding_the_inverse_rotation_preserves_the_function(rotation):
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.ReLU())
    head = nn.Linear(12, 5)
    original = nn.Sequential(trunk, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()
    rotated = nn.Sequential(trunk, ChannelRotation(rotation), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            fold_into_linear(head, rotation)).eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(rotated(x), original(x), atol=1e-5)
        features = trunk(x)
        assert not torch.allclose(ChannelRotation(rotation)(features), features, atol=1e-3)


def test_a_rotated_output_is_inserted_into_a_copy(rotation):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 4, 1)).eval()
    turned = with_rotated_output(model, "1", rotation)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = ChannelRotation(rotation)(model[1](model[0](x)))
        assert torch.allclose(turned[1](turned[0](x)), expected, atol=1e-5)
    assert isinstance(model[1], nn.ReLU), "the original model is not changed"
    assert turned[0].weight is not model[0].weight


def test_rotation_sweep_on_a_zoo_model_layer(lite0):
    from interpviz import experiments
    from interpviz.concepts import synthetic_dataset

    dataset = synthetic_dataset(count=120, progress=False)
    sweep = experiments.rotation_sweep(lite0, dataset, [0.0, 1.0], layer="blocks.4", limit=32, progress=False)
    plain = experiments.dissect_networks({"plain": lite0}, dataset, ["blocks.4"], limit=32, progress=False)["plain"]
    assert sweep.rotation.shape == (40, 40) and sweep.layer == "blocks.4"
    assert (sweep.results[0].iou - plain["blocks.4"].iou).abs().max() < 0.01
    assert not torch.allclose(sweep.results[1].iou, sweep.results[0].iou, atol=1e-3)
    assert "blocks.4" in dict(lite0.module.named_modules()) and not isinstance(lite0.module.blocks[4], nn.Sequential)
