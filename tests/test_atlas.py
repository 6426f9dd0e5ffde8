"""The feature atlas: what it writes, that it resumes, the explorer that reads it, and its command."""

import io
import json

import pytest
import torch
from PIL import Image
from torch import nn

from interpviz import cli, models
from interpviz.atlas import (AtlasExplorer, AtlasSettings, channel_stem, default_layers, is_finished, layer_folder,
                             render_channels, write_atlas)
from interpviz.activations import channel_maxima
from interpviz.data import patch_set
from interpviz.images import to_pil
from interpviz.widgets import png_bytes

SETTINGS = AtlasSettings(size=32, steps=4, batch=3, examples=2)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2, padding=1),
                           nn.ReLU()).eval()
    return models.wrap(module, name="tiny", input_size=32)


@pytest.fixture(scope="module")
def patches():
    return patch_set(size=32, per_photo_and_scale=1, scales=(0.5,), photos=["astronaut", "coffee", "chelsea"])


@pytest.fixture(scope="module")
def atlas(tmp_path_factory, tiny_model, patches):
    out = tmp_path_factory.mktemp("atlas")
    write_atlas(tiny_model, None, out, SETTINGS, patches=patches, progress=False)
    return out


def png_of(tensor):
    buffer = io.BytesIO()
    to_pil(tensor).save(buffer, format="PNG")
    return buffer.getvalue()


def test_default_layers_are_the_activations(tiny_model):
    assert default_layers(tiny_model) == ["1", "3"]


def test_every_channel_has_its_images_page_and_examples(atlas, tiny_model, patches):
    assert (atlas / "index.html").is_file()
    manifest = json.loads((atlas / "atlas.json").read_text())
    assert manifest["layers"] == {"1": 4, "3": 5}
    index = (atlas / "index.html").read_text()
    assert "1/index.html" in index and "3/index.html" in index
    layer_page = (layer_folder(atlas, "3") / "index.html").read_text()
    assert all(f"{channel_stem(c)}.html" in layer_page for c in range(5))
    maxima = channel_maxima(tiny_model, patches, "3", progress=False)
    second_batch = render_channels(tiny_model, "3", [3, 4], SETTINGS)
    for position, channel in enumerate([3, 4]):
        folder, stem = layer_folder(atlas, "3"), channel_stem(channel)
        assert (folder / f"{stem}.png").read_bytes() == png_of(second_batch.images[position])
        assert (folder / f"{stem}-negative.png").read_bytes() == png_of(second_batch.images[2 + position])
        entry = json.loads((folder / f"{stem}.json").read_text())
        indices, values = maxima.top(channel, k=2)
        assert entry["example_captions"] == [patches.captions[i] for i in indices]
        assert entry["example_values"] == pytest.approx(values)
        page = (folder / f"{stem}.html").read_text()
        assert f"{stem}-negative.png" in page and f"{stem}-examples.png" in page
        assert patches.captions[indices[0]] in page


def test_the_negative_visualization_lowers_the_channel(atlas):
    for channel in range(4):
        entry = json.loads((layer_folder(atlas, "1") / f"{channel_stem(channel)}.json").read_text())
        assert entry["score"] > entry["negative_score"]


def test_a_restart_renders_only_the_missing_channels(tmp_path, tiny_model, patches):
    write_atlas(tiny_model, ["3"], tmp_path, SETTINGS, patches=patches, progress=False)
    folder = layer_folder(tmp_path, "3")
    (folder / "0000.png").write_bytes(b"kept")
    (folder / "0004.json").unlink()
    (folder / "0004.png").unlink()
    write_atlas(tiny_model, ["3"], tmp_path, SETTINGS, patches=patches, progress=False)
    assert (folder / "0000.png").read_bytes() == b"kept"
    assert is_finished(tmp_path, "3", 4) and (folder / "0004.png").is_file()


def test_a_restart_with_other_settings_is_refused(tmp_path, tiny_model, patches):
    write_atlas(tiny_model, ["1"], tmp_path, SETTINGS, patches=patches, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        write_atlas(tiny_model, ["1"], tmp_path, AtlasSettings(size=32, steps=5, batch=3, examples=2),
                    patches=patches, progress=False)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="steps must be a whole number of at least 1"):
        AtlasSettings(steps=0)


def test_the_explorer_shows_the_atlas_files(atlas):
    explorer = AtlasExplorer(atlas)
    explorer.show()
    folder = layer_folder(atlas, "1")
    assert explorer.positive.value == png_bytes(Image.open(folder / "0000.png"))
    explorer.layer.value = "3"
    explorer.channel.value = 4
    assert explorer.error.value == ""
    assert explorer.negative.value == png_bytes(Image.open(layer_folder(atlas, "3") / "0004-negative.png"))
    assert "from the atlas" in explorer.source.value


def test_the_explorer_renders_a_missing_channel_live(tmp_path, tiny_model, patches):
    write_atlas(tiny_model, ["3"], tmp_path, SETTINGS, patches=patches, progress=False)
    (layer_folder(tmp_path, "3") / "0002.json").unlink()
    without_model = AtlasExplorer(tmp_path)
    without_model.channel.value = 2
    assert "pass model=" in without_model.error.value
    explorer = AtlasExplorer(tmp_path, model=tiny_model, patches=patches)
    explorer.channel.value = 2
    assert explorer.error.value == "" and "rendered live" in explorer.source.value
    live = render_channels(tiny_model, "3", [2], SETTINGS)
    assert explorer.positive.value == png_bytes(to_pil(live.images[0]))


def test_the_command_writes_an_atlas(tmp_path, capsys):
    out = tmp_path / "atlas"
    assert cli.main(["atlas", "efficientnet_lite0", "--layers", "stem", "--out", str(out), "--size", "32",
                     "--steps", "2", "--batch", "32", "--examples", "2"]) == 0
    assert f"open {out / 'index.html'}" in capsys.readouterr().out
    assert all(is_finished(out, "stem", channel) for channel in range(32))


@pytest.mark.parametrize("arguments, message", [
    (["--layers", ",", "--out", "OUT"], "give at least one layer"),
    (["--out", "OUT", "--steps", "0"], "--steps: must be a whole number of at least 1, not '0'"),
    (["--out", "FILE"], "is a file; give a folder"),
    (["--out", "OUT", "--timeout", "0"], "--timeout: must be a number greater than 0, not '0'"),
])
def test_the_command_checks_its_arguments(tmp_path, capsys, arguments, message):
    (tmp_path / "file").write_text("")
    arguments = [a.replace("OUT", str(tmp_path / "atlas")).replace("FILE", str(tmp_path / "file")) for a in arguments]
    with pytest.raises(SystemExit) as stopped:
        cli.main(["atlas", "efficientnet_lite0", *arguments])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_an_unknown_layer_is_one_line(tmp_path, capsys):
    assert cli.main(["atlas", "efficientnet_lite0", "--layers", "blocks.99", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "unknown layer 'blocks.99'" in error and error.count("\n") == 1
