import pytest

from interpviz import data
from interpviz import widgets as interp_widgets
from interpviz.widgets import FeatureExplorer


@pytest.fixture
def explorer(lite0):
    patches = data.patch_set(size=32, per_photo_and_scale=1, photos=["chelsea", "coffee"])
    return FeatureExplorer(lite0, data.load_photo("chelsea"), patches, layers=["stem", "blocks.5", "head"], top_k=3)


def test_channel_slider_follows_the_layer(explorer, lite0):
    assert explorer.channel.max == 31 and not explorer.channel.continuous_update
    explorer.show()
    explorer.channel.value = 20
    explorer.layer.value = "head"
    assert explorer.channel.max == 1279 and explorer.channel.value == 20
    explorer.channel.value = 1000
    explorer.layer.value = "blocks.5"
    assert explorer.channel.max == lite0.layer("blocks.5").channels - 1 == 79
    assert explorer.channel.value == 79
    assert "blocks.5" in explorer.info.value and "80 channels" in explorer.info.value


def test_results_are_cached_per_layer(explorer, monkeypatch):
    calls = []
    real = interp_widgets.channel_maxima

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(interp_widgets, "channel_maxima", counting)
    explorer.show()
    explorer.layer.value = "blocks.5"
    explorer.channel.value = 3
    explorer.layer.value = "stem"
    explorer.layer.value = "blocks.5"
    assert calls == ["stem", "blocks.5"]
