import pytest
import torch

from interpviz.optvis import objectives as obj
from interpviz.optvis.objectives import StepContext


@pytest.fixture
def context():
    generator = torch.Generator().manual_seed(0)
    activations = {
        "conv": torch.randn(3, 4, 5, 6, generator=generator),
        "logits": torch.randn(3, 10, generator=generator),
    }
    return StepContext(activations, torch.rand(3, 3, 8, 8, generator=generator))


def test_unit_objectives_read_the_right_numbers(context):
    conv, logits = context.activations["conv"], context.activations["logits"]
    assert torch.equal(obj.neuron_objective("conv", 2)(context), conv[:, 2, 2, 3])
    assert torch.equal(obj.neuron_objective("conv", 1, x=5, y=0)(context), conv[:, 1, 0, 5])
    assert torch.allclose(obj.channel_objective("conv", 3)(context), conv[:, 3].mean(dim=(1, 2)))
    assert torch.allclose(obj.layer_objective("conv")(context), conv.pow(2).mean(dim=(1, 2, 3)))
    assert torch.equal(obj.class_logit(7)(context), logits[:, 7])
    assert torch.allclose(obj.class_probability(7)(context), logits.softmax(1)[:, 7])


def test_direction_is_a_normalised_dot_product(context):
    conv = context.activations["conv"]
    vector = torch.tensor([3.0, 0, 4.0, 0])
    expected = (0.6 * conv[:, 0] + 0.8 * conv[:, 2]).mean(dim=(1, 2))
    assert torch.allclose(obj.direction_objective("conv", vector)(context), expected, atol=1e-6)
    unit_direction = obj.direction_objective("conv", [0, 1.0, 0, 0])(context)
    assert torch.allclose(unit_direction, obj.channel_objective("conv", 1)(context), atol=1e-6)


def test_random_direction_is_seeded_and_unit_length():
    assert torch.equal(obj.random_vector(8, seed=3), obj.random_vector(8, seed=3))
    assert not torch.equal(obj.random_vector(8, seed=3), obj.random_vector(8, seed=4))
    assert obj.random_vector(8).norm() == pytest.approx(1.0)


def test_composition_follows_arithmetic(context):
    a, b = obj.channel_objective("conv", 0), obj.class_logit(2)
    va, vb = a(context), b(context)
    assert torch.allclose((a + b)(context), va + vb)
    assert torch.allclose((a - b)(context), va - vb)
    assert torch.allclose((2.5 * a)(context), 2.5 * va)
    assert torch.allclose((a * 0.5)(context), 0.5 * va)
    assert torch.allclose((-a)(context), -va)
    assert (a + b).layers == {"conv", "logits"}
    assert torch.allclose(sum([a, b, a])(context), 2 * va + vb)


def test_binding_to_one_image(context):
    a = obj.channel_objective("conv", 0)
    bound = a.on(1)(context)
    assert bound[0] == 0 and bound[2] == 0 and bound[1] == a(context)[1]
    grid = sum(obj.channel_objective("conv", c).on(i) for i, c in enumerate([3, 1, 2]))
    conv = context.activations["conv"]
    expected = torch.stack([conv[0, 3].mean(), conv[1, 1].mean(), conv[2, 2].mean()])
    assert torch.allclose(grid(context), expected)
    with pytest.raises(IndexError, match="batch has 3 images"):
        a.on(3)(context)


def test_regularizers_are_minus_penalties():
    flat = StepContext({}, torch.full((1, 3, 8, 8), 0.5))
    noisy = StepContext({}, torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)))
    for regularizer in (obj.l1_penalty(), obj.total_variation(), obj.blur_penalty(), obj.frequency_penalty()):
        assert regularizer(flat).abs().max() < 1e-6, regularizer.description
        assert regularizer(noisy).item() < -1e-3, regularizer.description
        assert regularizer.layers == frozenset()


def test_diversity_prefers_different_images():
    same = torch.ones(3, 2, 4, 4)
    different = torch.zeros(3, 2, 4, 4)
    different[0, 0] = 1
    different[1, 1] = 1
    different[2, :, :2] = 1
    diversity = obj.diversity_objective("conv")
    assert diversity(StepContext({"conv": same}, None)).mean() < diversity(StepContext({"conv": different}, None)).mean()
    with pytest.raises(ValueError, match="at least 2"):
        diversity(StepContext({"conv": same[:1]}, None))


def test_bad_arguments_are_clear(context):
    with pytest.raises(IndexError, match="0 .. 3"):
        obj.channel_objective("conv", 4)(context)
    with pytest.raises(IndexError, match="outside the 6x5 map"):
        obj.neuron_objective("conv", 0, x=6, y=0)(context)
    with pytest.raises(ValueError, match="3 entries but layer 'conv' has 4"):
        obj.direction_objective("conv", [1.0, 2.0, 3.0])(context)
    with pytest.raises(ValueError, match="non-zero"):
        obj.direction_objective("conv", [0.0, 0.0])


def test_channels_and_positions_must_be_integers_and_match_the_layer(context):
    for wrong in (1.0, "3", None, True):
        with pytest.raises(TypeError, match="channel must be an int"):
            obj.channel_objective("conv", wrong)
        with pytest.raises(TypeError, match="channel must be an int"):
            obj.neuron_objective("conv", wrong)
    with pytest.raises(TypeError, match="x must be an int"):
        obj.neuron_objective("conv", 0, x=1.5)
    assert obj.channel_objective("conv", torch.tensor(2).numpy()[()])(context).shape == (3,)
    with pytest.raises(ValueError, match="no spatial positions.*x and y cannot be used"):
        obj.neuron_objective("logits", 1, x=0, y=0)(context)
    assert torch.equal(obj.neuron_objective("logits", 1)(context), context.activations["logits"][:, 1])
