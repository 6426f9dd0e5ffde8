"""ipywidgets explorers for the notebooks; each caches its results so moving back to a setting is instant."""

from __future__ import annotations

import dataclasses
import io
from typing import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import HTML, display
from PIL import Image

from interpviz.activations import ChannelMaxima, channel_maxima, feature_maps
from interpviz.broden import BrodenDataset
from interpviz.data import ImageSet
from interpviz.dissect import LayerDissection, dissect
from interpviz.dissect_report import top_image_overlays, top_images_figure
from interpviz.images import to_pil
from interpviz.models.zoo import LoadedModel
from interpviz.optvis.objectives import Objective, channel_objective, layer_objective, neuron_objective
from interpviz.optvis.prior import DenoisingAutoencoder
from interpviz.optvis.regularization import Regularization, render_regularized
from interpviz.optvis.render import RenderResult, render
from interpviz.plotting import dataset_examples_figure, image_grid


def fit_slider(slider: widgets.IntSlider, count: int) -> None:
    """Give an index slider the range 0 .. count - 1, keeping its value where it still fits."""
    with slider.hold_trait_notifications():
        slider.value = min(slider.value, count - 1)
        slider.max = count - 1


class FeatureExplorer:
    """Layer dropdown and channel slider showing one photo's feature map and the channel's top patches."""

    def __init__(self, model: LoadedModel, photo: Image.Image, patches: ImageSet,
                 layers: Sequence[str] | None = None, top_k: int = 8):
        self.model, self.photo, self.patches, self.top_k = model, photo, patches, top_k
        self._maxima: dict[str, ChannelMaxima] = {}
        self._maps = {}
        names = list(layers) if layers is not None else model.main_layers
        self.layer = widgets.Dropdown(options=names, value=names[0], description="layer")
        self.channel = widgets.IntSlider(min=0, max=model.layer(names[0]).channels - 1, value=0,
                                         description="channel", continuous_update=False)
        self.info = widgets.HTML()
        self.output = widgets.Output()
        self.layer.observe(self._on_layer, names="value")
        self.channel.observe(lambda change: self.redraw(), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.layer, self.channel]), self.info, self.output])

    def maxima(self, layer: str) -> ChannelMaxima:
        """Channel maxima of ``layer`` over the patch set, computed once and then cached."""
        if layer not in self._maxima:
            self._maxima[layer] = channel_maxima(self.model, self.patches, layer, progress=False)
        return self._maxima[layer]

    def photo_maps(self, layer: str):
        """The photo's feature maps at ``layer``, computed once and then cached."""
        if layer not in self._maps:
            self._maps[layer] = feature_maps(self.model, self.photo, layer)
        return self._maps[layer]

    def _on_layer(self, change) -> None:
        fit_slider(self.channel, self.model.layer(change["new"]).channels)
        self.redraw()

    def redraw(self) -> None:
        """Draw the feature map and the top patches for the current layer and channel."""
        layer, channel = self.layer.value, self.channel.value
        maps = self.photo_maps(layer)
        self.info.value = (f"<b>{layer}</b>: {maps.shape[0]} channels at "
                           f"{'x'.join(map(str, maps.shape[1:])) or '1'} resolution")
        with self.output:
            self.output.clear_output(wait=True)
            figure, axes = plt.subplots(1, 2, figsize=(7, 3.2))
            axes[0].imshow(self.photo)
            axes[0].set_title("photo")
            shown = maps[channel] if maps.ndim == 3 else maps[channel].view(1, 1)
            image = axes[1].imshow(shown.numpy(), cmap="viridis")
            axes[1].set_title(f"channel {channel} feature map")
            figure.colorbar(image, ax=axes[1], fraction=0.046)
            for axis in axes:
                axis.axis("off")
            examples = dataset_examples_figure(self.patches, self.maxima(layer), channel, k=self.top_k)
            for shown_figure in (figure, examples):
                display(shown_figure)
                plt.close(shown_figure)

    def show(self) -> widgets.VBox:
        """Draw once and return the widget for display."""
        self.redraw()
        return self.widget


def feature_explorer(model: LoadedModel, photo: Image.Image, patches: ImageSet,
                     layers: Sequence[str] | None = None, top_k: int = 8) -> FeatureExplorer:
    """Build and display a FeatureExplorer; returns it so a notebook (or a test) can drive its controls."""
    explorer = FeatureExplorer(model, photo, patches, layers, top_k)
    display(explorer.show())
    return explorer


def png_bytes(image: Image.Image, scale: int = 2) -> bytes:
    """PNG encoding of a PIL image, enlarged ``scale`` times with nearest-neighbour, for widgets.Image."""
    buffer = io.BytesIO()
    image.resize((image.width * scale, image.height * scale), Image.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


UNIT_KINDS = ("channel", "neuron", "layer (DeepDream)", "negative channel")


def unit_objective(kind: str, layer: str, channel: int) -> Objective:
    """The objective a widget's 'kind' dropdown names, for one layer and channel."""
    if kind == "channel":
        return channel_objective(layer, channel)
    if kind == "neuron":
        return neuron_objective(layer, channel)
    if kind == "layer (DeepDream)":
        return layer_objective(layer)
    if kind == "negative channel":
        return -channel_objective(layer, channel)
    raise ValueError(f"unknown unit kind {kind!r}; choose one of {', '.join(UNIT_KINDS)}")


class RenderExplorer:
    """Layer, channel, objective kind and steps; renders live (the image updates as it forms), cached."""

    def __init__(self, model: LoadedModel, layers: Sequence[str] | None = None, size: int = 128,
                 steps: int = 128, max_steps: int = 512, update_every: int = 8):
        self.model, self.size, self.update_every = model, size, update_every
        self.cache: dict[tuple, RenderResult] = {}
        names = list(layers) if layers is not None else model.main_layers
        self.layer = widgets.Dropdown(options=names, value=names[len(names) // 2], description="layer")
        self.channel = widgets.IntSlider(min=0, max=model.layer(self.layer.value).channels - 1,
                                         description="channel", continuous_update=False)
        self.kind = widgets.Dropdown(options=UNIT_KINDS, value="channel", description="objective")
        self.steps = widgets.IntSlider(value=steps, min=8, max=max_steps, step=8, description="steps",
                                       continuous_update=False)
        self.image = widgets.Image(format="png")
        self.status = widgets.HTML()
        self.layer.observe(self._on_layer, names="value")
        for control in (self.channel, self.kind, self.steps):
            control.observe(lambda change: self.redraw(), names="value")
        controls = widgets.VBox([self.layer, self.channel, self.kind, self.steps])
        self.widget = widgets.HBox([controls, widgets.VBox([self.image, self.status])])

    def _on_layer(self, change) -> None:
        fit_slider(self.channel, self.model.layer(change["new"]).channels)
        self.redraw()

    def _show_progress(self, step: int, images, value: float) -> None:
        if step % self.update_every == 0:
            self.image.value = png_bytes(to_pil(images[0].cpu()))
            self.status.value = f"step {step}/{self.steps.value}: objective {value:.2f}"

    def redraw(self) -> RenderResult:
        """Render (or fetch from the cache) the current setting and show it."""
        key = (self.layer.value, self.channel.value, self.kind.value, self.steps.value)
        objective = unit_objective(self.kind.value, self.layer.value, self.channel.value)
        if key not in self.cache:
            self.cache[key] = render(self.model, objective, size=self.size, steps=self.steps.value,
                                     progress=False, callback=self._show_progress)
        result = self.cache[key]
        self.image.value = png_bytes(result.pil[0])
        self.status.value = f"{objective.description}: final value {float(result.final_scores[0]):.2f}"
        return result

    def show(self) -> widgets.HBox:
        """Render once and return the widget for display."""
        self.redraw()
        return self.widget


class RegularizationExplorer:
    """One slider per regularizer strength and toggles for the parameterization; the regularized render is
    shown beside the unregularized one, with the unit's activation under each (results cached)."""

    def __init__(self, model: LoadedModel, unit: Objective, denoiser: DenoisingAutoencoder | None = None,
                 size: int = 128, steps: int = 128):
        self.model, self.unit, self.denoiser, self.size, self.steps = model, unit, denoiser, size, steps
        self.cache: dict[Regularization, RenderResult] = {}

        def log_slider(name: str, maximum_power: int) -> widgets.FloatLogSlider:
            return widgets.FloatLogSlider(value=10 ** (maximum_power - 4), base=10, min=maximum_power - 4,
                                          max=maximum_power, description=name, continuous_update=False)

        self.switches = {name: widgets.Checkbox(value=False, description=f"use {name}", indent=False)
                         for name in ("frequency", "total_variation", "l1", "blur", "denoiser")}
        self.strengths = {
            "frequency": log_slider("frequency", 4),
            "total_variation": log_slider("total var.", 3),
            "l1": log_slider("L1", 3),
            "blur": log_slider("blur", 4),
            "denoiser": log_slider("denoiser", 4),
        }
        self.jitter = widgets.IntSlider(value=0, min=0, max=16, description="jitter px", continuous_update=False)
        self.rotate = widgets.FloatSlider(value=0, min=0, max=30, step=1, description="rotate deg",
                                          continuous_update=False)
        self.scale = widgets.FloatSlider(value=0, min=0, max=0.3, step=0.02, description="scale +-",
                                         continuous_update=False)
        self.fourier = widgets.Checkbox(value=False, description="Fourier parameterization", indent=False)
        self.decorrelate = widgets.Checkbox(value=False, description="decorrelate colours", indent=False)
        self.latent = widgets.Checkbox(value=False, description="denoiser latent", indent=False,
                                       disabled=denoiser is None)
        self.switches["denoiser"].disabled = denoiser is None
        self.baseline_image, self.current_image = widgets.Image(format="png"), widgets.Image(format="png")
        self.baseline_label, self.current_label = widgets.HTML(), widgets.HTML()
        controls = [self.jitter, self.rotate, self.scale]
        controls += [widgets.HBox([self.switches[name], self.strengths[name]]) for name in self.strengths]
        controls += [self.fourier, self.decorrelate, self.latent]
        for control in [self.jitter, self.rotate, self.scale, self.fourier, self.decorrelate, self.latent,
                        *self.switches.values(), *self.strengths.values()]:
            control.observe(lambda change: self.redraw(), names="value")
        pictures = widgets.HBox([widgets.VBox([self.baseline_image, self.baseline_label]),
                                 widgets.VBox([self.current_image, self.current_label])])
        self.widget = widgets.HBox([widgets.VBox(controls), pictures])

    def settings(self) -> Regularization:
        """The Regularization that the controls describe now."""
        strength = {name: self.strengths[name].value if self.switches[name].value else 0.0 for name in self.strengths}
        return Regularization(jitter=self.jitter.value, rotate_degrees=self.rotate.value,
                              scale_spread=self.scale.value, fourier=self.fourier.value,
                              decorrelate=self.decorrelate.value, latent=self.latent.value, **strength)

    def result(self, settings: Regularization) -> RenderResult:
        """Render under ``settings``, once; later calls come from the cache."""
        if settings not in self.cache:
            self.cache[settings] = render_regularized(self.model, self.unit, settings, self.denoiser,
                                                      size=self.size, steps=self.steps, progress=False)
        return self.cache[settings]

    def redraw(self) -> None:
        """Show the baseline and the current settings side by side, activation under each."""
        for settings, image, label in ((Regularization(), self.baseline_image, self.baseline_label),
                                       (self.settings(), self.current_image, self.current_label)):
            result = self.result(settings)
            image.value = png_bytes(result.pil[0])
            label.value = f"{settings.label()}<br><b>activation {float(result.final_scores[0]):.2f}</b>"

    def show(self) -> widgets.HBox:
        """Draw once and return the widget for display."""
        self.redraw()
        return self.widget


class DissectionExplorer:
    """Layer, unit, IoU threshold and quantile for a dissection: the unit's labels and top images with masks.

    The IoU threshold only recounts (instant); a new quantile re-runs the dissection of that layer once.
    """

    QUANTILES = (0.001, 0.0025, 0.005, 0.01, 0.02)

    def __init__(self, model: LoadedModel, dataset: BrodenDataset, results: dict[str, LayerDissection],
                 images_per_unit: int = 4):
        self.model, self.dataset, self.images_per_unit = model, dataset, images_per_unit
        first = next(iter(results.values()))
        self.cache: dict[tuple[str, float], LayerDissection] = {
            (layer, result.settings.quantile): result for layer, result in results.items()
        }
        self.base_settings = first.settings
        self.layer = widgets.Dropdown(options=list(results), description="layer")
        self.unit = widgets.IntSlider(min=0, max=first.units - 1, description="unit", continuous_update=False)
        self.iou_threshold = widgets.FloatSlider(value=first.settings.iou_threshold, min=0.0, max=0.3, step=0.01,
                                                 description="IoU thr.", continuous_update=False)
        self.quantile = widgets.Dropdown(options=self.QUANTILES, value=first.settings.quantile, description="quantile")
        self.summary, self.details = widgets.HTML(), widgets.HTML()
        self.pictures = widgets.Output()
        for control in (self.layer, self.quantile):
            control.observe(self._on_dissection_change, names="value")
        for control in (self.unit, self.iou_threshold):
            control.observe(lambda change: self.redraw(), names="value")
        controls = widgets.HBox([widgets.VBox([self.layer, self.unit]), widgets.VBox([self.iou_threshold, self.quantile])])
        self.widget = widgets.VBox([controls, self.summary, self.details, self.pictures])

    def result(self) -> LayerDissection:
        """The dissection for the current layer and quantile (computed once, then cached)."""
        key = (self.layer.value, self.quantile.value)
        if key not in self.cache:
            settings = dataclasses.replace(self.base_settings, quantile=self.quantile.value)
            self.cache[key] = dissect(self.model, self.dataset, self.layer.value, settings, progress=False)[self.layer.value]
        return self.cache[key]

    def _on_dissection_change(self, change) -> None:
        fit_slider(self.unit, self.result().units)
        self.redraw()

    def redraw(self) -> None:
        """Show the layer's detector counts, the unit's best concept per category, and its top images."""
        result, unit, threshold = self.result(), self.unit.value, self.iou_threshold.value
        by_category = result.detectors_by_category(threshold)
        self.summary.value = (
            f"<b>{result.layer}</b>, quantile {self.quantile.value:g}: {sum(by_category.values())} of {result.units} "
            f"units are detectors at IoU &gt; {threshold:.2f}; {result.unique_detectors(threshold)} unique concepts; "
            + ", ".join(f"{category} {count}" for category, count in by_category.items())
        )
        rows = "".join(
            f"<tr><td>{category}</td><td>{best[unit].label}</td><td>{best[unit].iou:.3f}</td></tr>"
            for category, best in ((c, result.best(c)) for c in result.used_categories)
        )
        overall = result.best()[unit]
        verdict = "detector" if overall.iou > threshold else "not a detector"
        self.details.value = (f"unit {unit}: <b>{overall.label}</b> ({overall.category}), IoU {overall.iou:.3f}: {verdict}"
                              f"<table><tr><th>category</th><th>best concept</th><th>IoU</th></tr>{rows}</table>")
        with self.pictures:
            self.pictures.clear_output(wait=True)
            overlays = top_image_overlays(self.model, self.dataset, result, unit, self.images_per_unit)
            figure = image_grid(overlays, titles=[f"top {i + 1}" for i in range(len(overlays))],
                                columns=len(overlays), cell_inches=1.8)
            display(figure)
            plt.close(figure)

    def show(self) -> widgets.VBox:
        """Draw once and return the widget for display."""
        self.redraw()
        return self.widget


class TextCellExplorer:
    """Cell slider, feature dropdown and text-sample selector over precomputed cell activations.

    Choosing a feature jumps to the cell that tracks it best; the text is coloured by the chosen cell.
    """

    def __init__(self, samples: dict[str, tuple[str, dict[str, torch.Tensor]]], report: dict[str, dict],
                 kind: str = "tanh(c)"):
        self.samples, self.report = samples, report
        first_text, first_states = next(iter(samples.values()))
        self.sample = widgets.Dropdown(options=list(samples), description="text")
        self.kind = widgets.Dropdown(options=list(first_states), value=kind, description="activation")
        self.feature = widgets.Dropdown(options=["(any)"] + list(report), description="feature")
        self.cell = widgets.IntSlider(min=0, max=first_states[kind].shape[1] - 1, description="cell",
                                      continuous_update=False)
        self.text = widgets.HTML()
        self.feature.observe(self._on_feature, names="value")
        for control in (self.sample, self.kind, self.cell):
            control.observe(lambda change: self.redraw(), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.sample, self.feature]), widgets.HBox([self.kind, self.cell]),
                                    self.text])

    def _on_feature(self, change) -> None:
        if change["new"] in self.report:
            best = self.report[change["new"]]["best"][0]
            with self.kind.hold_trait_notifications(), self.cell.hold_trait_notifications():
                self.kind.value = best.activation
                self.cell.value = best.cell
        self.redraw()

    def redraw(self) -> None:
        """Colour the chosen sample by the chosen cell."""
        from interpviz.text import colour_text_html

        sample_text, states = self.samples[self.sample.value]
        values = states[self.kind.value][:, self.cell.value]
        self.text.value = colour_text_html(sample_text, values.numpy(), title=f"cell {self.cell.value}, {self.kind.value}")

    def show(self) -> widgets.VBox:
        """Draw once and return the widget for display."""
        self.redraw()
        return self.widget


class TabularUnitExplorer:
    """Layer and unit sliders for the credit MLP: the unit's preferred profile next to its top rows."""

    def __init__(self, model, data, plausibility: float = 0.1):
        from interpviz.tabular import HIDDEN_LAYERS

        self.model, self.data, self.plausibility = model, data, plausibility
        self.cache: dict[tuple[str, int], object] = {}
        self.layer = widgets.Dropdown(options=HIDDEN_LAYERS, description="layer")
        self.unit = widgets.IntSlider(min=0, max=self._units() - 1, description="unit", continuous_update=False)
        self.output = widgets.Output()
        self.layer.observe(self._on_layer, names="value")
        self.unit.observe(lambda change: self.redraw(), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.layer, self.unit]), self.output])

    def _units(self) -> int:
        from interpviz.tabular import unit_activations

        return unit_activations(self.model, self.data, self.layer.value).shape[1]

    def _on_layer(self, change) -> None:
        fit_slider(self.unit, self._units())
        self.redraw()

    def preferred(self):
        """The current unit's preferred input (computed once, then cached)."""
        from interpviz.tabular import preferred_input

        key = (self.layer.value, self.unit.value)
        if key not in self.cache:
            self.cache[key] = preferred_input(self.model, self.data, *key, plausibility=self.plausibility)
        return self.cache[key]

    def redraw(self) -> None:
        """Bar chart of the preferred profile (in standard deviations from the mean) and the unit's top rows."""
        from interpviz.tabular import FEATURES, feature_correlations, unit_activations

        preferred = self.preferred()
        activations = unit_activations(self.model, self.data, self.layer.value)
        correlations = feature_correlations(activations, self.data)[self.unit.value]
        top = activations[:, self.unit.value].topk(5).indices.numpy()
        with self.output:
            self.output.clear_output(wait=True)
            figure, axes = plt.subplots(1, 2, figsize=(10, 3))
            z = (np.array([preferred.profile[name] for name in FEATURES]) - self.data.mean) / self.data.std
            axes[0].barh(FEATURES, z, color=["tab:red" if v > 0 else "tab:blue" for v in z])
            axes[0].set_title(f"preferred input (activation {preferred.activation:.2f}; best row {preferred.best_row_activation:.2f})",
                              fontsize=9)
            axes[0].set_xlabel("standard deviations from the mean")
            axes[1].barh(FEATURES, correlations, color="tab:gray")
            axes[1].set_xlim(-1, 1)
            axes[1].set_title("correlation of the unit with each feature over the data", fontsize=9)
            figure.tight_layout()
            display(figure)
            plt.close(figure)
            rows = "".join("<tr>" + "".join(f"<td>{value:.1f}</td>" for value in self.data.features[i])
                           + f"<td>{int(self.data.default[i])}</td></tr>" for i in top)
            display(HTML("<b>top 5 rows</b><table><tr>" + "".join(f"<th>{name}</th>" for name in FEATURES)
                         + f"<th>default</th></tr>{rows}</table>"))

    def show(self) -> widgets.VBox:
        """Draw once and return the widget for display."""
        self.redraw()
        return self.widget


class ExperimentExplorer:
    """Experiment, layer and IoU-threshold selectors over finished dissections: counts per network, recounted live.

    ``experiments`` maps an experiment's name to its networks' dissections: {experiment: {network: {layer: result}}}.
    """

    def __init__(self, experiments: dict[str, dict[str, dict[str, LayerDissection]]], iou_threshold: float = 0.04):
        self.experiments = experiments
        self.experiment = widgets.Dropdown(options=list(experiments), description="experiment")
        self.layer = widgets.Dropdown(options=self._layers(), description="layer")
        self.iou_threshold = widgets.FloatSlider(value=iou_threshold, min=0.0, max=0.3, step=0.01,
                                                 description="IoU thr.", continuous_update=False)
        self.table, self.output = widgets.HTML(), widgets.Output()
        self.experiment.observe(self._on_experiment, names="value")
        for control in (self.layer, self.iou_threshold):
            control.observe(lambda change: self.redraw(), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.experiment, self.layer, self.iou_threshold]), self.output,
                                    self.table])

    def _layers(self) -> list[str]:
        networks = self.experiments[self.experiment.value].values()
        return [layer for layer in next(iter(networks)) if all(layer in results for results in networks)]

    def _on_experiment(self, change) -> None:
        layers = self._layers()
        with self.layer.hold_trait_notifications():
            previous = self.layer.value
            self.layer.options = layers
            self.layer.value = previous if previous in layers else layers[-1]
        self.redraw()

    def results(self) -> dict[str, LayerDissection]:
        """The chosen layer's dissection for every network of the chosen experiment."""
        return {network: results[self.layer.value] for network, results in self.experiments[self.experiment.value].items()}

    def redraw(self) -> None:
        """Unique detectors by category for each network, and the table of counts."""
        from interpviz.experiments import counts_figure, detector_table, table_html

        results, threshold = self.results(), self.iou_threshold.value
        values = {network: result.unique_detectors_by_category(threshold) for network, result in results.items()}
        self.table.value = table_html(detector_table(results, threshold))
        with self.output:
            self.output.clear_output(wait=True)
            figure = counts_figure(values, f"{self.experiment.value}: {self.layer.value}, IoU > {threshold:.2f}")
            display(figure)
            plt.close(figure)

    def show(self) -> widgets.VBox:
        """Draw once and return the widget for display."""
        self.redraw()
        return self.widget


class RotationExplorer:
    """Rotation amount slider: the detector count along the sweep, and a few units' labels and top images at a.

    ``model`` is the network the sweep rotated (a SmallCNN or a LoadedModel).
    """

    def __init__(self, model, dataset: BrodenDataset, sweep, units: Sequence[int] = (0, 1, 2, 3), images_per_unit: int = 3):
        self.model, self.dataset, self.sweep = model, dataset, sweep
        self.units, self.images_per_unit = list(units), images_per_unit
        self.amount = widgets.SelectionSlider(options=[(f"{a:.2f}", i) for i, a in enumerate(sweep.amounts)],
                                              description="rotation a", continuous_update=False)
        self.summary, self.output = widgets.HTML(), widgets.Output()
        self.amount.observe(lambda change: self.redraw(), names="value")
        self.widget = widgets.VBox([self.amount, self.summary, self.output])

    def redraw(self) -> None:
        """Mark the amount on the curve; show the chosen units' labels and top images in the rotated basis."""
        from interpviz.experiments import rotated_network
        from interpviz.rotation import fractional_rotation

        index = self.amount.value
        amount, result = self.sweep.amounts[index], self.sweep.results[index]
        unique = self.sweep.unique_detectors()
        self.summary.value = (f"a = {amount:.2f}: {unique[index]} unique detectors, {len(result.detectors())} detector "
                              f"units of {result.units} (a = 0: {unique[0]} unique)")
        network = rotated_network(self.model, fractional_rotation(self.sweep.rotation, amount), self.sweep.layer)
        with self.output:
            self.output.clear_output(wait=True)
            figure, axis = plt.subplots(figsize=(4, 2.4))
            axis.plot(self.sweep.amounts, unique, marker="o")
            axis.axvline(amount, color="tab:red")
            axis.set_xlabel("rotation amount a")
            axis.set_ylabel("unique detectors")
            figure.tight_layout()
            display(figure)
            plt.close(figure)
            figure = top_images_figure(network, self.dataset, result, self.units, self.images_per_unit, cell_inches=1.5)
            display(figure)
            plt.close(figure)

    def show(self) -> widgets.VBox:
        """Draw once and return the widget for display."""
        self.redraw()
        return self.widget
