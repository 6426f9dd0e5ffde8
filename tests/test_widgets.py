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


def test_render_explorer_renders_live_and_caches(lite0, monkeypatch):
    from interpviz.widgets import RenderExplorer

    explorer = RenderExplorer(lite0, layers=["blocks.1", "blocks.4", "blocks.6"], size=32, steps=8, update_every=4)
    assert explorer.layer.value == "blocks.4"
    explorer.show()
    assert bytes(explorer.image.value).startswith(b"\x89PNG")
    assert "final value" in explorer.status.value
    calls = []
    real = interp_widgets.render
    monkeypatch.setattr(interp_widgets, "render", lambda *a, **k: calls.append(a[1].description) or real(*a, **k))
    explorer.kind.value = "negative channel"
    explorer.kind.value = "channel"
    explorer.layer.value = "blocks.1"
    assert explorer.channel.max == lite0.layer("blocks.1").channels - 1
    assert calls == ["-(channel blocks.4[0])", "channel blocks.1[0]"]


def test_unit_objective_kinds():
    from interpviz.widgets import UNIT_KINDS, unit_objective

    descriptions = [unit_objective(kind, "blocks.2", 3).description for kind in UNIT_KINDS]
    assert descriptions == ["channel blocks.2[3]", "neuron blocks.2[3] at centre", "layer blocks.2 (mean of squares)",
                            "-(channel blocks.2[3])"]
    with pytest.raises(ValueError, match="unknown unit kind"):
        unit_objective("class", "blocks.2", 3)


def test_regularization_explorer_compares_with_the_baseline(lite0):
    from interpviz.optvis import channel_objective
    from interpviz.optvis.prior import load_denoiser
    from interpviz.optvis.regularization import Regularization
    from interpviz.widgets import RegularizationExplorer

    explorer = RegularizationExplorer(lite0, channel_objective("blocks.2", 1), load_denoiser(), size=32, steps=4)
    explorer.show()
    assert "no regularization" in explorer.baseline_label.value and "activation" in explorer.current_label.value
    explorer.strengths["total_variation"].value = 100.0
    assert Regularization() in explorer.cache and len(explorer.cache) == 1
    explorer.switches["total_variation"].value = True
    explorer.fourier.value = True
    assert explorer.settings() == Regularization(total_variation=100.0, fourier=True)
    assert "total_variation 100" in explorer.current_label.value and "fourier" in explorer.current_label.value
    assert len(explorer.cache) == 3


def test_dissection_explorer_recounts_and_redissects(tmp_path, monkeypatch):
    from torch import nn

    from interpviz import models
    from interpviz import widgets as module
    from interpviz.broden import BrodenDataset
    from interpviz.concepts import generate
    from interpviz.dissect import DissectionSettings, dissect
    from interpviz.widgets import DissectionExplorer

    dataset = BrodenDataset(generate(tmp_path / "set", count=12, size=32, progress=False))
    model = models.wrap(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)).eval())
    results = dissect(model, dataset, ["0", "1"], DissectionSettings(batch_size=4), progress=False)
    explorer = DissectionExplorer(model, dataset, results, images_per_unit=2)
    explorer.show()
    assert "of 4 units are detectors" in explorer.summary.value and "unit 0:" in explorer.details.value
    explorer.iou_threshold.value = 0.0
    assert "IoU &gt; 0.00" in explorer.summary.value
    calls = []
    monkeypatch.setattr(module, "dissect", lambda *a, **k: calls.append(a[3].quantile) or dissect(*a, **k))
    explorer.layer.value = "1"
    assert explorer.unit.max == 5 and calls == []
    explorer.unit.value = 5
    explorer.quantile.value = 0.02
    explorer.layer.value = "0"
    explorer.layer.value = "1"
    assert calls == [0.02, 0.02] and explorer.unit.max == 5
    assert len(explorer.cache) == 4


def test_text_cell_explorer_jumps_to_the_best_cell():
    import torch

    from interpviz.text import CellScore
    from interpviz.widgets import TextCellExplorer

    sample = "x = 'a'\n"
    states = {kind: torch.randn(len(sample), 4, generator=torch.Generator().manual_seed(0)) for kind in ("c", "tanh(c)", "h")}
    report = {"in_string": {"best": [CellScore("in_string", 3, "h", 0.9, "AUC")], "passing": {"h": 1}}}
    explorer = TextCellExplorer({"sample": (sample, states)}, report)
    explorer.show()
    assert "cell 0, tanh(c)" in explorer.text.value and explorer.text.value.count("<span") == len(sample) + 3
    explorer.feature.value = "in_string"
    assert (explorer.kind.value, explorer.cell.value) == ("h", 3) and "cell 3, h" in explorer.text.value


def test_tabular_unit_explorer_follows_the_layer():
    from interpviz import tabular
    from interpviz.widgets import TabularUnitExplorer

    data = tabular.credit_default_data(count=300)
    model, _ = tabular.train_mlp(data, epochs=20)
    explorer = TabularUnitExplorer(model, data)
    explorer.show()
    assert explorer.unit.max == 15
    explorer.unit.value = 12
    explorer.layer.value = "layers.3"
    assert explorer.unit.max == 7 and explorer.unit.value == 7
    assert set(explorer.cache) == {("layers.1", 0), ("layers.1", 12), ("layers.3", 7)}
