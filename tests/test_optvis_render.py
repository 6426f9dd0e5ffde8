import math

import pytest
import torch
from torch import nn

from interpviz import data, models
from interpviz.hooks import forward_to, get_layer
from interpviz.optvis import channel_objective, layer_objective, recipes, render
from interpviz.optvis.transforms import Jitter


class PlantedStripes(nn.Module):
    """A planted unit: stripes of period 12 px in one colour channel and orientation, plus that colour's excess."""

    def __init__(self, colour: int, vertical: bool, period: int = 12):
        super().__init__()
        self.detector = nn.Conv2d(3, 2, period, bias=False)
        stripe = torch.cos(2 * math.pi * torch.arange(period) / period).repeat(period, 1)
        excess = torch.full((3,), -0.5)
        excess[colour] = 1.0
        with torch.no_grad():
            self.detector.weight.zero_()
            self.detector.weight[0, colour] = (stripe if vertical else stripe.T) / period
            self.detector.weight[1] = excess.view(3, 1, 1) / period**2
        self.unit = nn.Identity()

    def forward(self, images):
        responses = self.detector(images)
        return self.unit(torch.relu(responses[:, :1]) + responses[:, 1:])


@pytest.mark.parametrize("colour, vertical", [(0, True), (1, False), (2, True)])
@pytest.mark.parametrize("parameterization", ["fourier", "pixel"])
def test_planted_colour_and_orientation_are_recovered(colour, vertical, parameterization):
    result = render(PlantedStripes(colour, vertical), channel_objective("unit", 0), size=64, steps=300,
                    transforms=(Jitter(2),), parameterization=parameterization, progress=False)
    means = result.images[0].mean(dim=(1, 2))
    others = [c for c in range(3) if c != colour]
    assert means[colour] > means[others].max() + 0.1, means.tolist()
    planted = result.images[0, colour]
    across = (planted[:, 1:] - planted[:, :-1]).pow(2).mean()
    down = (planted[1:, :] - planted[:-1, :]).pow(2).mean()
    ratio = float(across / down) if vertical else float(down / across)
    assert ratio > 1.4, ratio


@pytest.fixture(scope="module")
def patches():
    return data.patch_set(size=96, per_photo_and_scale=6)


@pytest.mark.parametrize("layer, channel", [("blocks.4", 11), ("blocks.9", 30)])
def test_render_beats_every_patch_of_the_patch_set(lite0, patches, layer, channel):
    result = render(lite0, channel_objective(layer, channel), size=96, steps=48, progress=False)
    with torch.no_grad():
        patch_scores = forward_to(lite0, lite0.preprocess.normalize(patches.to_tensor()), layer)[layer][:, channel]
    best_patch = float(patch_scores.mean(dim=(1, 2)).max())
    assert float(result.final_scores[0]) > best_patch


def test_same_seed_same_image_other_seed_other_image(lite0):
    options = dict(size=32, steps=4, progress=False)
    first = render(lite0, channel_objective("blocks.2", 1), seed=11, **options)
    again = render(lite0, channel_objective("blocks.2", 1), seed=11, **options)
    other = render(lite0, channel_objective("blocks.2", 1), seed=12, **options)
    assert torch.equal(first.images, again.images) and first.history == again.history
    assert not torch.equal(first.images, other.images)


def test_render_returns_history_snapshots_and_pil(lite0):
    seen = []
    result = render(lite0, channel_objective("blocks.1", 0), size=40, steps=6, snapshot_steps=(0, 3, 6),
                    callback=lambda step, images, value: seen.append((step, images.shape, value)), progress=False)
    assert len(result.history) == 6
    assert sorted(result.snapshots) == [0, 3, 6]
    assert torch.allclose(result.snapshots[6], result.images)
    assert [step for step, _, _ in seen] == list(range(1, 7))
    assert result.pil[0].size == (40, 40) and result.pil[0].mode == "RGB"


def test_render_never_computes_deeper_layers(lite0):
    calls = []
    handles = [get_layer(lite0, name).register_forward_hook(lambda *a, name=name: calls.append(name))
               for name in ["blocks.5", "head", "fc"]]
    try:
        render(lite0, channel_objective("blocks.4", 0), size=32, steps=3, progress=False)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == []


@pytest.mark.parametrize("error", [RuntimeError("stop here"), KeyboardInterrupt()])
def test_model_is_left_unchanged_after_a_render_that_fails(error, no_hooks_left):
    model = models.load("efficientnet_lite0", pretrained=False)
    model.module.train()
    model.module.head.eval()
    for parameter in model.module.blocks[3].parameters():
        parameter.requires_grad_(False)
    modes = [sub.training for sub in model.module.modules()]
    flags = [parameter.requires_grad for parameter in model.module.parameters()]
    before = {key: value.clone() for key, value in model.module.state_dict().items()}

    def fail(step, images, value):
        if step == 3:
            raise error

    with pytest.raises(type(error)):
        render(model, channel_objective("blocks.6", 0), size=32, steps=10, callback=fail, progress=False)
    assert [sub.training for sub in model.module.modules()] == modes
    assert [parameter.requires_grad for parameter in model.module.parameters()] == flags
    no_hooks_left(model.module)
    after = model.module.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before), "weights or batch-norm statistics changed"


def test_objective_without_layers_is_refused(lite0):
    from interpviz.optvis import total_variation

    with pytest.raises(ValueError, match="reads no layer"):
        render(lite0, total_variation(), steps=1, progress=False)


def test_channel_grid_optimizes_each_channel_in_its_own_image(lite0):
    result = recipes.channel_grid(lite0, "blocks.3", [0, 5, 9], size=48, steps=24, progress=False)
    assert result.images.shape == (3, 3, 48, 48)
    with torch.no_grad():
        maps = forward_to(lite0, lite0.preprocess.normalize(result.images), "blocks.3")["blocks.3"]
    means = maps.mean(dim=(2, 3))
    for image, channel in enumerate([0, 5, 9]):
        others = [i for i in range(3) if i != image]
        assert means[image, channel] > means[others, channel].max()
    with pytest.raises(IndexError, match="0 .. 39"):
        recipes.channel_grid(lite0, "blocks.3", [40])


def test_positive_and_negative_pull_apart(lite0):
    result = recipes.positive_and_negative(lite0, "blocks.5", 2, size=48, steps=24, progress=False)
    positive, negated = result.final_scores.tolist()
    assert positive > 0 and negated > 0


def test_adversarial_example_stays_within_budget_and_flips_the_label(lite0):
    espresso = lite0.class_names.index("espresso")
    result = recipes.adversarial_example(lite0, data.load_photo("chelsea"), espresso, epsilon=4 / 255, steps=20)
    assert result.linf <= 4 / 255 + 1e-6
    assert result.before[0][0] != "espresso" and result.after[0][0] == "espresso"


def test_deepdream_amplifies_the_layer(lite0):
    photo = data.load_photo("coffee")
    start = lite0.preprocess.denormalize(lite0.preprocess(photo))
    with torch.no_grad():
        before = layer_objective("blocks.6")(
            type("C", (), {"activations": forward_to(lite0, lite0.preprocess.normalize(start), "blocks.6")})()
        )
    result = recipes.deepdream(lite0, photo, "blocks.6", steps=5, progress=False)
    assert float(result.final_scores[0]) > float(before[0])
    assert (result.images - start).abs().mean() < 0.1


def test_class_visualization_raises_the_logit(lite0):
    result = recipes.class_visualization(lite0, 967, size=64, steps=16, progress=False)
    with torch.no_grad():
        logits = lite0.module(lite0.preprocess.normalize(result.images))
    assert logits[0, 967] > logits[0].median() + 5
    with pytest.raises(IndexError):
        recipes.class_visualization(lite0, 1000)


@pytest.mark.parametrize("argument, value, message", [("size", 0, "size must be at least 1"),
                                                      ("batch", 0, "batch must be at least 1"),
                                                      ("batch", -2, "batch must be at least 1")])
def test_sizes_below_one_are_refused_before_any_work(argument, value, message):
    with pytest.raises(ValueError, match=message):
        render(PlantedStripes(0, True), channel_objective("unit", 0), steps=2, progress=False, **{argument: value})


def test_an_objective_that_becomes_nan_stops_with_the_step():
    from interpviz.optvis.objectives import Objective

    calls = []

    def score(context):
        calls.append(1)
        value = context.activations["unit"].mean(dim=(1, 2, 3))
        return value * float("nan") if len(calls) == 3 else value

    broken = Objective(score, frozenset(["unit"]), "nan at the third step")
    with pytest.raises(FloatingPointError, match="became nan at step 3 of 10"):
        render(PlantedStripes(0, True), broken, size=32, steps=10, progress=False)


def test_renders_of_one_model_in_two_threads_restore_its_flags():
    import threading

    model = PlantedStripes(1, False).train()
    model.detector.weight.requires_grad_(True)
    alone = render(model, channel_objective("unit", 0), size=24, steps=3, progress=False, fast_copy=False)
    results = []

    def run():
        results.append(render(model, channel_objective("unit", 0), size=24, steps=3, progress=False,
                              fast_copy=False))

    for _ in range(3):
        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert model.detector.weight.requires_grad and model.training and model.detector.training
    assert len(results) == 6 and all(torch.equal(result.images, alone.images) for result in results)
