import copy
import dataclasses

import pytest
import torch

from interpviz import models
from interpviz.hooks import capture, forward_to, layer_path
from interpviz.optvis import channel_objective, render
from interpviz.speed import activations_in_place, fast_copy, fold_batch_norms, inference_batch_size


def test_fast_copy_computes_the_same_function_and_leaves_the_model_alone(lite0):
    before = {key: value.clone() for key, value in lite0.module.state_dict().items()}
    fast = fast_copy(lite0.module)
    assert sum(isinstance(sub, torch.nn.BatchNorm2d) for sub in fast.modules()) == 0
    assert sum(isinstance(sub, torch.nn.BatchNorm2d) for sub in lite0.module.modules()) == 49
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(fast(x), lite0.module(x), atol=1e-3, rtol=1e-4)
        ours = forward_to(fast, x, "blocks.6.depthwise.bn")["blocks.6.depthwise.bn"]
        theirs = forward_to(lite0, x, "blocks.6.depthwise.bn")["blocks.6.depthwise.bn"]
    assert torch.allclose(ours, theirs, atol=1e-3, rtol=1e-4)
    after = lite0.module.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_only_batch_norms_right_after_a_convolution_are_folded():
    assert fold_batch_norms(models.load("efficientnet_lite0", pretrained=False).module) == 49
    assert fold_batch_norms(models.load("resnet18", pretrained=False).module) == 3
    assert fold_batch_norms(models.load("vgg16", pretrained=False).module) == 0


def test_fast_and_plain_render_agree(lite0):
    objective = channel_objective("blocks.5", 4)
    fast = render(lite0, objective, size=48, steps=3, progress=False)
    plain = render(lite0, objective, size=48, steps=3, progress=False, fast_copy=False)
    assert torch.allclose(fast.images, plain.images, atol=2e-3)
    assert abs(fast.history[-1] - plain.history[-1]) < 1e-2 * abs(plain.history[-1]) + 1e-3


def test_user_hooks_are_not_copied(lite0, no_hooks_left):
    calls = []
    handle = lite0.module.stem.register_forward_hook(lambda *args: calls.append(1))
    try:
        render(lite0, channel_objective("blocks.1", 0), size=32, steps=2, progress=False)
    finally:
        handle.remove()
    assert calls == []
    no_hooks_left(lite0.module)


def test_cpu_batches_keep_every_layer_output_under_the_mmap_threshold(lite0):
    # EfficientNet-Lite0's largest output is blocks.1.expand: 96 x 112 x 112 floats = 4.8 MB per 224 px image.
    assert inference_batch_size(lite0) == 6
    assert inference_batch_size(lite0, (112, 112)) == 27
    assert inference_batch_size(lite0, (112, 112), most=8) == 8
    assert inference_batch_size(lite0, (1024, 1024)) == 1
    assert inference_batch_size(dataclasses.replace(lite0, device=torch.device("meta")), most=64) == 64


def test_only_activations_of_a_fresh_tensor_are_made_in_place():
    conv = torch.nn.Conv2d(3, 3, 1)
    safe = torch.nn.Sequential(conv, torch.nn.Identity(), torch.nn.ReLU6(), torch.nn.LeakyReLU())
    unsafe = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Identity(), torch.nn.ReLU(),
                                 torch.nn.Conv2d(3, 3, 1), torch.nn.MaxPool2d(1), torch.nn.ReLU())
    assert activations_in_place(safe) == 2 and safe[2].inplace and safe[3].inplace
    assert activations_in_place(unsafe) == 0
    assert not any(getattr(sub, "inplace", False) for sub in unsafe)
    assert activations_in_place(models.load("efficientnet_lite0", pretrained=False).module) == 33


def test_pre_activation_outputs_survive_in_place_activations(lite0):
    fast = fast_copy(lite0.module)
    x = torch.randn(2, 3, 64, 64)
    layers = ["blocks.3.expand.bn", "blocks.3"]  # the forward pass runs on through the in-place ReLU6
    with torch.no_grad():
        ours = forward_to(fast, x, layers)["blocks.3.expand.bn"]
        theirs = forward_to(lite0, x, layers)["blocks.3.expand.bn"]
    assert ours.min() < -0.1
    assert torch.allclose(ours, theirs, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("name", models.available_models())
def test_every_addressable_layer_gives_the_same_values_on_the_fast_copy(name):
    model = models.load(name, pretrained=False, device="cpu")
    torch.manual_seed(0)
    for norm in [sub for sub in model.module.modules() if isinstance(sub, torch.nn.BatchNorm2d)]:
        norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.2, 3)  # so that folding changes values
        norm.weight.data.uniform_(0.5, 2), norm.bias.data.uniform_(-1, 1)
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad(), capture(model, model.layer_names, detach=True) as on_model:
        model(x)
    tolerance = {layer: 1e-4 * float(value.abs().max()) + 1e-6 for layer, value in on_model.items()}

    def same(layer, got):
        return torch.allclose(got, on_model[layer], rtol=1e-3, atol=tolerance[layer])

    default_copy = fast_copy(model.module)
    with torch.no_grad(), capture(default_copy, model.layer_names, detach=True) as on_copy:
        default_copy(x)
    folded_away = [layer for layer in model.layer_names if not same(layer, on_copy[layer])]
    kept_copy = fast_copy(model.module, keep=[layer_path(model, layer) for layer in folded_away])
    with torch.no_grad(), capture(kept_copy, folded_away, detach=True) as on_kept_copy:
        kept_copy(x)
    assert [layer for layer in folded_away if not same(layer, on_kept_copy[layer])] == []
    assert len(folded_away) == fold_batch_norms(copy.deepcopy(model.module))  # each folded conv was checked unfolded
