import pytest
import torch

from interpviz import models
from interpviz.hooks import (
    ChannelOutOfRangeError,
    UnknownLayerError,
    capture,
    describe_layers,
    forward_to,
    get_layer,
)


def count_calls(module, names):
    counts = {name: 0 for name in names}
    handles = []
    for name in names:

        def hook(_m, _i, _o, name=name):
            counts[name] += 1

        handles.append(get_layer(module, name).register_forward_hook(hook))
    return counts, handles


def test_unknown_layer_lists_the_closest_names(lite0):
    with pytest.raises(UnknownLayerError, match=r"unknown layer 'blokcs\.1'.*closest valid names: blocks\.1"):
        lite0.layer("blokcs.1")
    with pytest.raises(UnknownLayerError, match="blocks.10"):
        forward_to(lite0, torch.zeros(1, 3, 64, 64), "blocks.100")


def test_capture_records_and_removes_its_hooks(lite0, no_hooks_left):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), capture(lite0, ["stem", "blocks.3"]) as recorded:
        lite0(x)
    assert recorded["stem"].shape == (2, 32, 32, 32)
    assert recorded["blocks.3"].shape == (2, 40, 8, 8)
    no_hooks_left(lite0.module)


def test_capture_removes_hooks_when_the_body_raises(lite0, no_hooks_left):
    with pytest.raises(RuntimeError, match="boom"):
        with capture(lite0, ["stem", "head"]):
            raise RuntimeError("boom")
    no_hooks_left(lite0.module)


def test_forward_to_never_computes_deeper_layers(lite0, no_hooks_left):
    deeper = [f"blocks.{i}" for i in range(11, 16)] + ["head", "pool", "fc"]
    shallower = [f"blocks.{i}" for i in range(11)]
    counts, handles = count_calls(lite0.module, deeper + shallower)
    try:
        with torch.no_grad():
            forward_to(lite0, torch.randn(1, 3, 96, 96), "blocks.10")
    finally:
        for handle in handles:
            handle.remove()
    assert {name: counts[name] for name in deeper} == {name: 0 for name in deeper}
    assert {name: counts[name] for name in shallower} == {name: 1 for name in shallower}
    no_hooks_left(lite0.module)


def test_forward_to_gives_the_same_values_as_a_full_pass(lite0):
    x = torch.randn(2, 3, 80, 80)
    with torch.no_grad():
        early = forward_to(lite0, x, ["blocks.4", "stem"])
        with capture(lite0, ["blocks.4", "stem"]) as full:
            lite0(x)
    assert list(early) == ["blocks.4", "stem"]
    for name in early:
        assert torch.equal(early[name], full[name])


def test_gradients_flow_through_forward_to(lite0):
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    forward_to(lite0, x, "blocks.2")["blocks.2"][0, 5].mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_capture_is_not_changed_by_a_later_inplace_relu(no_hooks_left):
    alexnet = models.load("alexnet", pretrained=False)
    with torch.no_grad():
        conv5 = forward_to(alexnet, torch.randn(1, 3, 224, 224), ["features.10", "features.12"])["features.10"]
    assert (conv5 < 0).any(), "the raw convolution output must keep its negative values"
    no_hooks_left(alexnet.module)


def test_channel_out_of_range_says_the_valid_range(lite0):
    layer = lite0.layer("blocks.0")
    assert layer.check_channel(15) == 15
    with pytest.raises(ChannelOutOfRangeError, match=r"channel 16 .* 16 channels: use 0 \.\. 15"):
        layer.check_channel(16)
    with pytest.raises(ChannelOutOfRangeError):
        layer.check_channel(-1)
    with pytest.raises(TypeError):
        layer.check_channel(1.0)


def test_modules_called_twice_are_not_addressable():
    resnet = models.load("resnet18", pretrained=False)
    names = [info.name for info in describe_layers(resnet.module, 64)]
    assert "layer1.0" in names and "layer1.0.conv1" in names
    assert "layer1.0.relu" not in names


def test_a_layer_called_twice_is_refused_everywhere_with_one_message(no_hooks_left):
    from interpviz.hooks import LayerCalledTwiceError, called_twice_message
    from interpviz.optvis import channel_objective, render

    resnet = models.load("resnet18", pretrained=False, device="cpu")
    x = torch.rand(1, 3, 64, 64)
    message = called_twice_message("layer1.0.relu")
    attempts = {
        "layer": lambda: resnet.layer("layer1.0.relu"),
        "forward_to": lambda: forward_to(resnet, x, "layer1.0.relu"),
        "forward_to on the module": lambda: forward_to(resnet.module, x, ["layer1.0", "layer1.0.relu"]),
        "render": lambda: render(resnet, channel_objective("layer1.0.relu", 0), size=32, steps=1, progress=False),
    }
    for what, attempt in attempts.items():
        with pytest.raises(LayerCalledTwiceError) as raised:
            attempt()
        assert str(raised.value) == message, what
    with pytest.raises(LayerCalledTwiceError, match="runs more than once"):
        with capture(resnet, "layer1.0.relu"):
            resnet(x)
    no_hooks_left(resnet.module)
    assert forward_to(resnet, x, "layer1.0.conv1")["layer1.0.conv1"].shape == (1, 64, 16, 16)
