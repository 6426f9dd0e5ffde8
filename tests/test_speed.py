import torch

from interpviz import models
from interpviz.hooks import forward_to
from interpviz.optvis import channel_objective, render
from interpviz.speed import fast_copy, fold_batch_norms


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
