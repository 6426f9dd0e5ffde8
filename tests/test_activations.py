import pytest
import torch

from interpviz import data
from interpviz.activations import channel_maxima, feature_maps
from interpviz.hooks import capture


@pytest.fixture(scope="module")
def patches():
    return data.patch_set(size=48, per_photo_and_scale=2, photos=["chelsea", "coffee", "astronaut"])


def test_channel_maxima_match_a_plain_full_pass(lite0, patches):
    maxima = channel_maxima(lite0, patches, "blocks.3", batch_size=5, progress=False)
    with torch.no_grad(), capture(lite0, "blocks.3") as recorded:
        lite0(lite0.preprocess.normalize(patches.to_tensor()))
    maps = recorded["blocks.3"]
    assert maxima.values.shape == (len(patches), 40)
    assert maxima.map_size == tuple(maps.shape[2:])
    assert torch.allclose(maxima.values, maps.amax(dim=(2, 3)), atol=1e-5)
    rows, cols = maxima.positions // maps.shape[3], maxima.positions % maps.shape[3]
    picked = maps[torch.arange(len(patches))[:, None], torch.arange(40)[None, :], rows, cols]
    assert torch.allclose(picked, maxima.values, atol=1e-5)


def test_top_examples_are_sorted_and_checked(lite0, patches):
    maxima = channel_maxima(lite0, patches, "stem", progress=False)
    indices, values = maxima.top(4, k=5)
    assert values == sorted(values, reverse=True)
    assert values[0] == pytest.approx(float(maxima.values[:, 4].max()))
    low_indices, low_values = maxima.top(4, k=3, largest=False)
    assert low_values[0] == pytest.approx(float(maxima.values[:, 4].min()))
    with pytest.raises(IndexError, match="0 .. 31"):
        maxima.top(32)


def test_vector_layers_work_too(lite0, patches):
    maxima = channel_maxima(lite0, patches, "fc", progress=False)
    assert maxima.values.shape == (len(patches), 1000) and maxima.map_size == (1, 1)


def test_feature_maps_of_a_photo(lite0):
    maps = feature_maps(lite0, data.load_photo("chelsea"), "blocks.5")
    assert maps.shape == lite0.layer("blocks.5").output_shape
