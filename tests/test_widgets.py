import io
from collections import OrderedDict

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from interpviz import data, models
from interpviz import widgets as interp_widgets
from interpviz.widgets import FeatureExplorer


@pytest.fixture(autouse=True)
def no_figures_from_earlier_tests():
    """Start every test with no pyplot figure open: tests here check that explorers leave none open."""
    plt.close("all")


def widget_tree(widget):
    """Every widget inside ``widget`` (itself included)."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from widget_tree(child)


def shown_outputs(explorer) -> tuple:
    """What the explorer shows now: every image's bytes and every HTML text, except the error line."""
    return tuple(bytes(w.value) if isinstance(w, widgets.Image) else w.value
                 for w in widget_tree(explorer.widget)
                 if isinstance(w, (widgets.Image, widgets.HTML)) and w is not explorer.error)


def another_value(control):
    """A value of ``control`` different from its current one, as a student could pick it."""
    if isinstance(control, widgets.Checkbox):
        return not control.value
    if isinstance(control, (widgets.Dropdown, widgets.SelectionSlider)):
        values = [option[1] if isinstance(option, tuple) else option for option in control.options]
        return next(value for value in reversed(values) if value != control.value)
    return control.max if control.value != control.max else control.min


def png_pixels(value: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(bytes(value))).convert("RGB"))


def assert_fits_a_narrow_window(explorer) -> None:
    """Every picture is shown at its own pixel width (never stretched) and fits MAX_SHOWN_PX, and every row wraps
    onto a new line when the window is narrow (so nothing is cut off at its right edge)."""
    for widget in widget_tree(explorer.widget):
        if isinstance(widget, widgets.Image) and widget.value:
            width = png_pixels(widget.value).shape[1]
            assert widget.layout.width == f"{width}px", f"a {width} px picture is shown {widget.layout.width} wide"
            assert width <= interp_widgets.MAX_SHOWN_PX, f"a picture {width} px wide is cut off in a narrow window"
        if isinstance(widget, widgets.HBox):
            assert widget.layout.flex_flow == "row wrap", f"a row of {len(widget.children)} widgets does not wrap"


def titles_fit(figure):
    """``figure``, after checking that its titles lie inside it and do not overlap one another."""
    figure.canvas.draw()
    titles = [axis.title for axis in figure.axes] + list(figure.texts)  # figure texts: the suptitle
    boxes = [title.get_window_extent() for title in titles if title.get_text()]
    for box in boxes:
        assert 0 <= box.x0 and box.x1 <= figure.bbox.width, "a title runs off the figure"
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:]), "two titles overlap"
    return figure


def change_each_control(explorer, controls) -> None:
    """Set every control to another value, as the frontend would; each change must change the output, quietly,
    and every figure shown must fit a narrow window with its titles whole."""
    figures_before = plt.get_fignums()
    real_figure_png = interp_widgets.figure_png
    for control in controls:
        before = shown_outputs(explorer)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(interp_widgets, "figure_png",
                          lambda figure, *args: real_figure_png(titles_fit(figure), *args))
            control.value = another_value(control)
            explorer.wait()
        assert explorer.error.value == "", f"{control.description}: {explorer.error.value}"
        assert shown_outputs(explorer) != before, f"changing {control.description} changed nothing"
        assert_fits_a_narrow_window(explorer)
    assert plt.get_fignums() == figures_before


@pytest.fixture
def explorer(lite0):
    patches = data.patch_set(size=32, per_photo_and_scale=1, photos=["chelsea", "coffee"])
    return FeatureExplorer(lite0, data.load_photo("chelsea"), patches, layers=["stem", "blocks.5", "head"], top_k=3)


@pytest.fixture(scope="module")
def concept_images(tmp_path_factory):
    from interpviz.broden import BrodenDataset
    from interpviz.concepts import generate

    return BrodenDataset(generate(tmp_path_factory.mktemp("concepts") / "set", count=12, size=32, progress=False))


def tiny_network(names: tuple[str, str], channels: int = 4):
    layers = OrderedDict([(names[0], nn.Conv2d(3, channels, 3, padding=1)), (names[1], nn.Conv2d(channels, 6, 3, padding=1))])
    return models.wrap(nn.Sequential(layers).eval(), name="-".join(names))


def tiny_dissections(network, dataset):
    from interpviz.dissect import DissectionSettings, dissect

    return dissect(network, dataset, [name for name, _ in network.module.named_children()], DissectionSettings(batch_size=4),
                   progress=False)


def test_no_pyplot_figure_is_open_when_anything_is_shown(lite0, monkeypatch):
    """Bug 1: an open figure while the frontend talks to the kernel can be flushed into the wrong output."""
    open_figures_when_shown = []
    monkeypatch.setattr(interp_widgets, "display", lambda *shown: open_figures_when_shown.append(plt.get_fignums()))
    patches = data.patch_set(size=32, per_photo_and_scale=1, photos=["chelsea", "coffee"])
    explorer = interp_widgets.feature_explorer(lite0, data.load_photo("chelsea"), patches, layers=["stem", "head"], top_k=3)
    for image in (w for w in widget_tree(explorer.widget) if isinstance(w, widgets.Image)):
        image.observe(lambda change: open_figures_when_shown.append(plt.get_fignums()), names="value")
    explorer.layer.value = "head"
    explorer.channel.value = 7
    assert open_figures_when_shown and all(figures == [] for figures in open_figures_when_shown)
    strip = png_pixels(explorer.examples_image.value)
    assert (strip < 200).any(axis=2).mean() > 0.2, "the top-patches strip is (nearly) blank"


def test_the_top_8_patches_fit_a_narrow_window(lite0):
    """Browser check, chapter 01: the top 8 patches in one row were drawn 1280 px wide, and the last ones cut off."""
    patches = data.patch_set(size=32, per_photo_and_scale=1, photos=["chelsea", "coffee"])
    explorer = FeatureExplorer(lite0, data.load_photo("chelsea"), patches, layers=["stem.act"], top_k=8)
    explorer.show()
    height, width = png_pixels(explorer.examples_image.value).shape[:2]
    assert_fits_a_narrow_window(explorer)
    assert height > width / 2, "the eight patches should wrap into two rows"


def test_grid_images_are_drawn_at_their_cell_size_whatever_their_titles():
    """Browser check, chapter 04: titles and a suptitle squeezed the 128 px cells of the diversity grid to 56 px."""
    from interpviz.plotting import image_grid

    images = [np.zeros((16, 16, 3), np.uint8)] * 4
    for titles, suptitle in ((None, None), (["activation 1.0"] * 4, "blocks.9[3], diversity 30"),
                             (["two\nlines", "", "", "a title much wider than the image under it"], None)):
        figure = image_grid(images, titles=titles, columns=4, cell_inches=1.28, suptitle=suptitle)
        figure.canvas.draw()
        for axis in figure.axes:
            box = axis.get_window_extent()
            assert box.width / figure.dpi == pytest.approx(1.28) and box.height / figure.dpi == pytest.approx(1.28)
        plt.close(titles_fit(figure))


def test_a_choice_slider_starting_on_its_first_option_has_its_label():
    """Browser check, chapter 04: ipywidgets leaves the label "" there, and the caption read "frequency penalty ;"."""
    assert interp_widgets.choice_slider("frequency pen.", interp_widgets.PENALTY_STRENGTHS, 0.0).label == "off"
    assert interp_widgets.choice_slider("transforms", interp_widgets.TRANSFORM_STRENGTHS, 1.0).label == "standard"


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


def test_feature_explorer_every_control_and_privileged_default_layers(lite0):
    patches = data.patch_set(size=32, per_photo_and_scale=1, photos=["chelsea"])
    explorer = FeatureExplorer(lite0, data.load_photo("chelsea"), patches, top_k=2)
    assert explorer.layer.options[0] == "stem.act" and explorer.layer.options[-1] == "head"
    assert "blocks.3.depthwise.act" in explorer.layer.options and "blocks.3" not in explorer.layer.options
    explorer.show()
    change_each_control(explorer, [explorer.channel, explorer.layer])


def test_a_callback_error_shows_in_the_explorer(explorer, monkeypatch):
    explorer.show()

    def broken(*args, **kwargs):
        raise RuntimeError("patches went missing\nsecond line")

    monkeypatch.setattr(interp_widgets, "dataset_examples_figure", broken)
    explorer.channel.value = 5
    assert "RuntimeError: patches went missing" in explorer.error.value and "second line" not in explorer.error.value
    assert "color" in explorer.error.value and plt.get_fignums() == []
    monkeypatch.undo()
    explorer.channel.value = 6
    assert explorer.error.value == ""


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
    shown_during_render = []
    explorer.image.observe(lambda change: shown_during_render.append(explorer.live.progress.value), names="value")
    explorer.show()
    assert shown_during_render[:2] == [4, 8] and explorer.live.progress.value == explorer.live.progress.max == 8
    assert bytes(explorer.image.value).startswith(b"\x89PNG") and explorer.image.layout.width == "256px"
    assert "activation" in explorer.status.value
    calls = []
    real = interp_widgets.render
    monkeypatch.setattr(interp_widgets, "render", lambda *a, **k: calls.append(a[1].description) or real(*a, **k))
    explorer.kind.value = "negative channel"
    explorer.kind.value = "channel"
    explorer.layer.value = "blocks.1"
    assert explorer.channel.max == lite0.layer("blocks.1").channels - 1
    assert calls == ["-(channel blocks.4[0])", "channel blocks.1[0]"]


def test_a_newer_setting_stops_the_render_in_progress(lite0):
    from interpviz.widgets import RenderExplorer

    explorer = RenderExplorer(lite0, layers=["blocks.1.depthwise.act"], size=32, steps=16, update_every=4)
    explorer.show()
    progress_seen = []

    def change_mid_render(change):
        progress_seen.append(change["new"])
        if change["new"] == 3 and explorer.channel.value == 1:
            explorer.channel.value = 2

    explorer.live.progress.observe(change_mid_render, names="value")
    explorer.channel.value = 1
    cached_channels = sorted(key[1] for key in explorer.cache)
    assert cached_channels == [0, 2], "the superseded render (channel 1) ran to the end"
    assert "[2]" in explorer.status.value and explorer.error.value == ""
    assert bytes(explorer.image.value) == interp_widgets.png_bytes(explorer.cache[explorer.key()][0].pil[0])
    assert 16 in progress_seen and progress_seen.count(4) == 1


def test_background_renders_finish_and_report_their_errors(lite0, monkeypatch):
    from interpviz.widgets import RenderExplorer

    explorer = RenderExplorer(lite0, layers=["blocks.1.depthwise.act"], size=32, steps=8, background=True)
    explorer.show()
    explorer.channel.value = 3
    explorer.wait()
    assert sorted(key[1] for key in explorer.cache) == [0, 3] and "[3]" in explorer.status.value

    def failing(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(interp_widgets, "render", failing)
    explorer.channel.value = 4
    explorer.wait()
    assert "RuntimeError: out of memory" in explorer.error.value


def test_render_explorer_every_control(lite0):
    from interpviz.widgets import RenderExplorer

    explorer = RenderExplorer(lite0, layers=["blocks.1.depthwise.act", "blocks.2.depthwise.act"], size=32, steps=8,
                              max_steps=16)
    explorer.show()
    change_each_control(explorer, [explorer.layer, explorer.channel, explorer.kind, explorer.steps,
                                   explorer.transforms, explorer.frequency])
    assert "frequency penalty 10000" in explorer.status.value and "transforms double" in explorer.status.value


def test_a_render_stuck_at_zero_says_why(lite0, monkeypatch):
    """Browser check, chapter 02: a channel that is 0 on the starting image stays grey, captioned only 'activation 0.00'."""
    from interpviz.widgets import RenderExplorer

    explorer = RenderExplorer(lite0, layers=["blocks.1.depthwise.act"], size=32, steps=8)
    explorer.show()
    assert "activation" in explorer.status.value and "no gradient" not in explorer.status.value
    monkeypatch.setattr(interp_widgets, "evaluate", lambda *args: torch.zeros(1))
    explorer.channel.value = 1
    assert "activation 0.00</b>: the unit is 0 on the starting image" in explorer.status.value


def test_unit_objective_kinds():
    from interpviz.widgets import UNIT_KINDS, unit_objective

    descriptions = [unit_objective(kind, "blocks.2", 3).description for kind in UNIT_KINDS]
    assert descriptions == ["channel blocks.2[3]", "neuron blocks.2[3] at centre", "layer blocks.2 (mean of squares)",
                            "-(channel blocks.2[3])"]
    with pytest.raises(ValueError, match="unknown unit kind"):
        unit_objective("class", "blocks.2", 3)


def test_scaled_transforms():
    from interpviz.optvis.transforms import STANDARD_TRANSFORMS
    from interpviz.widgets import scaled_transforms

    assert scaled_transforms(0) == ()
    assert scaled_transforms(1.0) == STANDARD_TRANSFORMS
    assert scaled_transforms(2.0)[0].pixels == 24 and max(scaled_transforms(2.0)[3].angles) == 20


def test_regularization_explorer_compares_with_the_baseline(lite0):
    from interpviz.optvis.prior import load_denoiser
    from interpviz.optvis.regularization import Regularization
    from interpviz.widgets import RegularizationExplorer

    explorer = RegularizationExplorer(lite0, load_denoiser(), layer="blocks.2", channel=1, size=32, steps=4)
    assert "blocks.2" in explorer.layer.options and explorer.unit.description == "channel blocks.2[1]"
    explorer.show()
    assert "no regularization" in explorer.baseline_label.value and "activation" in explorer.current_label.value
    explorer.strengths["total_variation"].value = 100.0
    assert ("blocks.2", 1, Regularization()) in explorer.cache and len(explorer.cache) == 1
    explorer.switches["total_variation"].value = True
    explorer.fourier.value = True
    assert explorer.settings() == Regularization(total_variation=100.0, fourier=True)
    assert "total_variation 100" in explorer.current_label.value and "fourier" in explorer.current_label.value
    assert len(explorer.cache) == 3


def test_a_strength_slider_is_greyed_while_its_remedy_is_off(lite0):
    from interpviz.widgets import RegularizationExplorer

    explorer = RegularizationExplorer(lite0, None, layers=["blocks.2.depthwise.act"], size=32, steps=4)
    assert all(slider.disabled for slider in explorer.strengths.values())
    assert explorer.switches["denoiser"].disabled and explorer.latent.disabled
    explorer.switches["blur"].value = True
    assert [name for name, slider in explorer.strengths.items() if not slider.disabled] == ["blur"]
    explorer.switches["blur"].value = False
    assert explorer.strengths["blur"].disabled


def test_regularization_explorer_every_control(lite0):
    from interpviz.optvis.prior import load_denoiser
    from interpviz.widgets import RegularizationExplorer

    explorer = RegularizationExplorer(lite0, load_denoiser(), layers=["blocks.1.depthwise.act", "blocks.2.depthwise.act"],
                                      size=32, steps=2)
    explorer.show()
    controls = [explorer.layer, explorer.channel, explorer.jitter, explorer.rotate, explorer.scale]
    for name in explorer.PENALTIES:
        controls += [explorer.switches[name], explorer.strengths[name]]
    change_each_control(explorer, controls + [explorer.fourier, explorer.decorrelate, explorer.latent])
    assert "denoiser 10000" in explorer.current_label.value


def test_strengths_are_whole_decades_that_start_where_chapter_03_does(lite0):
    """Browser check, chapter 03: a log slider moved twice read 'frequency 1.58489', and a tick started at the
    weakest strength, 0.1 for total variation, which changes nothing to see."""
    from interpviz.widgets import RegularizationExplorer

    explorer = RegularizationExplorer(lite0, None, layers=["blocks.2.depthwise.act"], size=32, steps=2)
    assert {name: slider.value for name, slider in explorer.strengths.items()} == {
        "frequency": 1e4, "total_variation": 100.0, "l1": 100.0, "blur": 1e4, "denoiser": 1000.0}
    slider = explorer.strengths["total_variation"]
    assert [label for label, _ in slider.options] == ["0.1", "1", "10", "100", "1000"] and slider.label == "100"


def test_diversity_explorer_every_control(lite0):
    from interpviz.widgets import DiversityExplorer

    explorer = DiversityExplorer(lite0, layers=["blocks.1.depthwise.act", "blocks.2.depthwise.act"], count=2, size=32,
                                 steps=4)
    explorer.show()
    assert "diversity 3," in explorer.status.value and "frequency penalty off" in explorer.status.value
    change_each_control(explorer, [explorer.layer, explorer.channel, explorer.diversity, explorer.transforms,
                                   explorer.frequency])
    assert "diversity 300" in explorer.status.value


def test_dissection_explorer_recounts_and_redissects(concept_images, monkeypatch):
    from interpviz import widgets as module
    from interpviz.dissect import dissect
    from interpviz.widgets import DissectionExplorer

    model = tiny_network(("0", "1"))
    results = tiny_dissections(model, concept_images)
    explorer = DissectionExplorer(model, concept_images, results, images_per_unit=2, render_steps=4, size=32)
    explorer.show()
    assert "of 4 units are detectors" in explorer.summary.value and "unit 0:" in explorer.view.label.value
    assert bytes(explorer.view.visualization.value).startswith(b"\x89PNG")
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


def test_dissection_explorer_every_control(concept_images):
    from interpviz.widgets import DissectionExplorer

    model = tiny_network(("0", "1"))
    explorer = DissectionExplorer(model, concept_images, tiny_dissections(model, concept_images), images_per_unit=2,
                                  render_steps=4, size=32)
    explorer.show()
    change_each_control(explorer, [explorer.unit, explorer.layer, explorer.iou_threshold, explorer.quantile])


def test_experiment_explorer_switches_to_a_network_with_other_layers(concept_images):
    """Bug 2: options and value set in an order that is invalid in between raised TraitError, then KeyError."""
    from interpviz.widgets import ExperimentExplorer

    small = {name: tiny_dissections(tiny_network(("conv1", "conv2"), width), concept_images)
             for name, width in (("narrow", 4), ("wide", 8))}
    other = tiny_network(("first", "second"))
    explorer = ExperimentExplorer({"small networks: width": small, "another family": {"other": tiny_dissections(other, concept_images)}},
                                  models={"other": other}, dataset=concept_images, images_per_unit=2, render_steps=4,
                                  size=32)
    explorer.show()
    assert explorer.layer.value == "conv2" and explorer.unit.max == 5
    explorer.unit.value = 5
    explorer.experiment.value = "another family"
    assert explorer.error.value == ""
    assert list(explorer.layer.options) == ["first", "second"] and explorer.layer.value == "first"
    assert explorer.unit.max == 3 and explorer.unit.value == 3
    assert "first unit 3" in explorer.views["other"].label.value and "first" in explorer.chart_title
    explorer.layer.value = "second"
    assert explorer.error.value == "" and "second unit 3" in explorer.views["other"].label.value
    explorer.experiment.value = "small networks: width"
    assert explorer.error.value == "" and explorer.layer.value == "conv1"
    labels = [row.value for row in explorer.unit_rows.children]
    assert len(labels) == 2 and "narrow" in labels[0] and "conv1 unit 3" in labels[1]


def test_experiment_explorer_every_control(concept_images):
    from interpviz.widgets import ExperimentExplorer

    networks = {name: tiny_network(("conv1", "conv2"), width) for name, width in (("narrow", 4), ("wide", 8))}
    other = tiny_network(("first", "second"))
    experiments = {"width": {name: tiny_dissections(network, concept_images) for name, network in networks.items()},
                   "other": {"other": tiny_dissections(other, concept_images)}}
    explorer = ExperimentExplorer(experiments, models={**networks, "other": other}, dataset=concept_images,
                                  images_per_unit=2, render_steps=4, size=32)
    explorer.show()
    change_each_control(explorer, [explorer.unit, explorer.layer, explorer.iou_threshold, explorer.experiment])


def test_unit_view_keeps_the_top_images_at_their_own_height():
    """Bug (browser check, chapter 07): the HBox stretched the top-images strip to the visualization's height."""
    from interpviz.widgets import LiveRender, UnitView

    view = UnitView(LiveRender(lambda error: None), images_per_unit=2, render_steps=4, size=32)
    assert view.widget.layout.align_items == "flex-start"
    assert view.top_images.layout.height is None


def test_a_chart_of_zeros_says_so():
    from interpviz.experiments import counts_figure
    from interpviz.widgets import say_when_all_zero

    figure = say_when_all_zero(counts_figure({"a": {"colour": 0}, "b": {"colour": 0}}, "t"), "no detectors")
    assert [text.get_text() for text in figure.axes[0].texts] == ["no detectors"] and figure.axes[0].get_ylim() == (0, 1)
    figure = say_when_all_zero(counts_figure({"a": {"colour": 2}}, "t"), "no detectors")
    assert len(figure.axes[0].texts) == 0
    plt.close("all")


def test_rotation_explorer_every_control(concept_images):
    from interpviz import experiments
    from interpviz.widgets import RotationExplorer

    model = tiny_network(("0", "1"))
    sweep = experiments.rotation_sweep(model, concept_images, [0.0, 1.0], layer="1", progress=False)
    explorer = RotationExplorer(model, concept_images, sweep, units=[0, 1], images_per_unit=2)
    explorer.show()
    change_each_control(explorer, [explorer.amount, explorer.unit])


def test_rotation_explorer_counts_as_the_chapter_does(concept_images, monkeypatch):
    """Browser check, chapter 08: the explorer said 8 unique detectors (distinct top labels) where the chapter's text
    said 9 (the paper's count), and its curve of whole counts had ticks at 7.25 and 7.5."""
    from interpviz import experiments
    from interpviz.widgets import RotationExplorer

    model = tiny_network(("0", "1"))
    sweep = experiments.rotation_sweep(model, concept_images, [0.0, 1.0], layer="1", progress=False)
    monkeypatch.setattr(sweep, "unique_detectors_paper", lambda iou_threshold=None: [42, 41])
    ticks = []
    real_figure_png = interp_widgets.figure_png

    def recording_ticks(figure, *args):
        ticks.append(list(figure.axes[0].get_yticks()))
        return real_figure_png(figure, *args)

    monkeypatch.setattr(interp_widgets, "figure_png", recording_ticks)
    explorer = RotationExplorer(model, concept_images, sweep, units=[0], images_per_unit=2)
    explorer.show()
    assert "a = 0.00: 42 unique detectors (the paper's count" in explorer.summary.value
    assert ticks[0] and all(float(tick).is_integer() for tick in ticks[0])


def test_text_cell_explorer_jumps_to_the_best_cell():
    from interpviz.text import CellScore
    from interpviz.widgets import TextCellExplorer

    sample = "x = 'a'\n"
    states = {kind: torch.randn(len(sample), 4, generator=torch.Generator().manual_seed(0)) for kind in ("c", "tanh(c)", "h")}
    report = {"in_string": {"best": [CellScore("in_string", 3, "h", 0.9, "AUC")], "passing": {"h": 1}}}
    explorer = TextCellExplorer({"sample": (sample, states), "another sample": (sample[::-1], states)}, report)
    explorer.show()
    assert "cell 0, tanh(c)" in explorer.text.value and explorer.text.value.count("<span") == len(sample) + 3
    explorer.feature.value = "in_string"
    assert (explorer.kind.value, explorer.cell.value) == ("h", 3) and "cell 3, h" in explorer.text.value
    change_each_control(explorer, [explorer.sample, explorer.kind, explorer.cell])


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
    change_each_control(explorer, [explorer.layer, explorer.unit])
