import numpy as np
import pytest
import torch
import torch.nn.functional as F

from interpviz import data, models
from interpviz.models import zoo
from interpviz.models.efficientnet_lite import Conv2dSame, EfficientNetLite0, rename_shipped_keys

CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat"}


def test_every_shipped_key_matches_our_architecture():
    shipped = torch.load(zoo.efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    renamed = rename_shipped_keys(shipped)
    ours = EfficientNetLite0().state_dict()
    assert len(renamed) == len(shipped) == len(ours)
    assert set(renamed) == set(ours)
    assert all(renamed[key].shape == ours[key].shape for key in ours)


def test_unexpected_shipped_key_is_an_error():
    with pytest.raises(KeyError, match="_blocks.0._se_reduce"):
        rename_shipped_keys({"_blocks.0._se_reduce.weight": torch.zeros(1)})


def test_chelsea_is_a_cat(lite0):
    (top_name, _), *_ = lite0.predict(data.load_photo("chelsea"), k=1)[0]
    assert top_name in CAT_CLASSES


def test_coffee_is_espresso(lite0):
    assert lite0.predict(data.load_photo("coffee"), k=1)[0][0][0] == "espresso"


@pytest.mark.parametrize("size", [223, 224, 225, 17])
@pytest.mark.parametrize("kernel, stride", [(3, 2), (5, 2), (3, 1), (5, 1)])
def test_same_padding_matches_tensorflow_rule(size, kernel, stride):
    conv = Conv2dSame(2, 2, kernel, stride=stride, bias=False)
    x = torch.randn(1, 2, size, size)
    out = conv(x)
    assert out.shape[-1] == -(-size // stride)
    total = max((out.shape[-1] - 1) * stride + kernel - size, 0)
    padded = F.pad(x, [total // 2, total - total // 2] * 2)
    assert torch.allclose(out, F.conv2d(padded, conv.weight, stride=stride), atol=1e-6)


def test_model_is_in_eval_mode_on_the_requested_device(lite0):
    assert not lite0.module.training
    assert lite0.device == torch.device("cpu")
    assert {p.device.type for p in lite0.module.parameters()} == {"cpu"}


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet19'.*efficientnet_lite0.*resnet18"):
        models.load("resnet19")


def test_missing_torchvision_weights_offline_name_file_folder_and_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("INTERPVIZ_OFFLINE", "1")
    with pytest.raises(models.WeightsNotFoundError) as raised:
        models.load("resnet18")
    message = str(raised.value)
    assert "resnet18-f37072fd.pth" in message
    assert str(tmp_path / "checkpoints") in message
    assert "download" in message and "IMAGENET1K_V1" in message and "pretrained=False" in message


def test_missing_weights_without_network_fails_fast_without_downloading(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv("INTERPVIZ_OFFLINE", raising=False)
    probes = []

    def refuse(address, timeout):
        probes.append((address, timeout))
        raise OSError("network unreachable")

    monkeypatch.setattr(zoo.socket, "create_connection", refuse)
    with pytest.raises(models.WeightsNotFoundError, match="network is not reachable"):
        models.load("alexnet")
    assert len(probes) == 1 and probes[0][1] <= 5


def test_cached_torchvision_weights_are_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    saved = models.load("resnet18", pretrained=False, seed=7).module.state_dict()
    (tmp_path / "checkpoints").mkdir()
    torch.save(saved, tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    loaded = models.load("resnet18").module.state_dict()
    assert all(torch.equal(saved[key], loaded[key]) for key in saved)


def test_random_weights_follow_the_seed():
    first = models.load("alexnet", pretrained=False, seed=0).module.features[0].weight
    again = models.load("alexnet", pretrained=False, seed=0).module.features[0].weight
    other = models.load("alexnet", pretrained=False, seed=1).module.features[0].weight
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_random_lite0_differs_from_pretrained(lite0):
    random = models.load("efficientnet_lite0", pretrained=False)
    assert not torch.equal(random.module.stem.conv.weight, lite0.module.stem.conv.weight)


def test_layers_have_readable_names_and_output_shapes(lite0):
    assert lite0.layer("blocks.10").output_shape == (112, 14, 14)
    assert lite0.layer("stem").output_shape == (32, 112, 112)
    assert lite0.layer("fc").output_shape == (1000,)
    assert lite0.main_layers == ["stem"] + [f"blocks.{i}" for i in range(16)] + ["head"]


@pytest.mark.parametrize(
    "name, layer, shape",
    [
        ("alexnet", "conv5", (256, 13, 13)),
        ("vgg16", "conv5_3", (512, 14, 14)),
        ("resnet18", "layer3.1", (256, 14, 14)),
        ("googlenet", "inception4d", (528, 14, 14)),
    ],
)
def test_torchvision_layers_by_name_and_alias(name, layer, shape):
    model = models.load(name, pretrained=False)
    assert model.layer(layer).output_shape == shape
    assert set(model.main_layers) <= set(model.layer_names) | set(model.layer_aliases)


def test_class_names_are_imagenet(lite0):
    assert len(lite0.class_names) == 1000
    assert lite0.class_names[967] == "espresso"


def test_predict_returns_sorted_probabilities(lite0):
    rows = lite0.predict([np.asarray(data.load_photo("rocket")), data.load_photo("astronaut")], k=5)
    assert len(rows) == 2
    for row in rows:
        probabilities = [p for _, p in row]
        assert probabilities == sorted(probabilities, reverse=True)
        assert 0 < sum(probabilities) <= 1.0001


@pytest.mark.parametrize("k", [0, -1, 1001, 2.0, "5", True])
def test_predict_says_which_k_is_allowed(lite0, k):
    allowed = f"k must be a whole number from 1 to 1000 \\(the number of classes\\), got {k!r}"
    with pytest.raises(ValueError, match=allowed):
        lite0.predict(data.load_photo("rocket"), k=k)


@pytest.mark.parametrize("name", models.available_models())
def test_unit_layers_come_right_after_a_rectifier(name):
    from interpviz.hooks import capture

    model = models.load(name, pretrained=False, device="cpu")
    assert model.unit_layers and set(model.unit_layers) <= set(model.layer_names) | set(model.layer_aliases)
    with torch.no_grad(), capture(model, model.unit_layers + model.main_layers, detach=True) as outputs:
        model(torch.randn(2, 3, 96, 96))
    assert all(float(outputs[layer].min()) >= 0 for layer in model.unit_layers)
    linear = [layer for layer in model.main_layers if float(outputs[layer].min()) < 0]
    assert not set(linear) & set(model.unit_layers)
    if name == "efficientnet_lite0":
        assert linear == [f"blocks.{i}" for i in range(16)], "its block outputs are linear bottlenecks"
        assert "blocks.3.depthwise.act" in model.unit_layers and "blocks.0.expand.act" not in model.unit_layers
