"""ipywidgets explorers for the notebooks; each caches its results so moving back to a setting is instant.

Rules every explorer follows (a browser taught us each one):
- figures are drawn to PNG bytes and closed before anything is shown, then shown through ``widgets.Image``;
  no open pyplot figure ever exists for the inline backend to flush into the wrong output;
- images are shown at a fixed pixel width (``SHOWN_PX``), captions have a fixed width and wrap;
- no picture is wider than ``MAX_SHOWN_PX`` and rows wrap (``row``), so a narrow JupyterLab window cuts nothing off;
- an error in a control's callback shows as a red line in the explorer itself (``explorer.error``);
- a render shows a progress bar and its image every few steps, and a newer setting stops it (``LiveRender``).
"""

from __future__ import annotations

import dataclasses
import html
import io
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from interpviz.activations import ChannelMaxima, channel_maxima, feature_maps
from interpviz.broden import BrodenDataset
from interpviz.data import ImageSet
from interpviz.dissect import LayerDissection, dissect
from interpviz.dissect_report import top_image_overlays, top_images_figure
from interpviz.images import to_pil
from interpviz.models.zoo import LoadedModel
from interpviz.optvis.objectives import (Objective, channel_objective, diversity_objective, frequency_penalty,
                                         layer_objective, neuron_objective)
from interpviz.optvis.prior import DenoisingAutoencoder
from interpviz.optvis.regularization import Regularization, render_regularized
from interpviz.optvis.render import RenderResult, StepCallback, evaluate, render
from interpviz.optvis.transforms import Jitter, Pad, RandomRotate, RandomScale, Transform, scale_range
from interpviz.plotting import dataset_examples_figure, image_grid

SHOWN_PX = 256
MAX_SHOWN_PX = 720  # the widest picture an explorer shows: it fits a narrow JupyterLab window without being cut off
EXAMPLE_COLUMNS = 4  # top dataset examples per row: 4 fit MAX_SHOWN_PX (8 in one row were drawn 1280 px wide)
FIGURE_DPI = 100
ERROR_COLOUR = "#c62828"
CONTROL_LAYOUT = {"width": "380px"}
CONTROL_STYLE = {"description_width": "110px"}


# ---- showing pictures -------------------------------------------------------------------------------------------

def row(children: Sequence[widgets.Widget]) -> widgets.HBox:
    """A row that keeps each child at its own size and wraps onto a new line in a narrow window.

    A plain HBox stretches its children to the row's height and lets a row too wide for the window run off its
    right edge, where the browser cuts it off.
    """
    return widgets.HBox(list(children), layout=widgets.Layout(align_items="flex-start", flex_flow="row wrap"))


def png_bytes(image: Image.Image, shown_px: int = SHOWN_PX) -> bytes:
    """PNG of a PIL image enlarged (nearest neighbour) to ``shown_px`` wide: the size it is shown at."""
    height = max(1, round(image.height * shown_px / image.width))
    buffer = io.BytesIO()
    image.resize((shown_px, height), Image.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


def figure_png(figure: Figure, dpi: int = FIGURE_DPI) -> bytes:
    """PNG of a matplotlib figure, which is closed before this returns (so pyplot can never show it elsewhere)."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(figure)
    return buffer.getvalue()


def picture(width_px: int = SHOWN_PX) -> widgets.Image:
    """An empty PNG image widget shown at exactly ``width_px`` pixels wide."""
    return widgets.Image(format="png", layout=widgets.Layout(width=f"{width_px}px", min_width=f"{width_px}px"))


def show_figure(image: widgets.Image, figure: Figure, dpi: int = FIGURE_DPI) -> None:
    """Show ``figure`` in ``image`` at the pixel width it was drawn at (so its text stays readable)."""
    png = figure_png(figure, dpi)
    width = Image.open(io.BytesIO(png)).width
    image.value = png
    image.layout.width = image.layout.min_width = f"{width}px"


def narrowed(figure: Figure, width_px: int = MAX_SHOWN_PX, dpi: int = FIGURE_DPI) -> Figure:
    """``figure`` made at most ``width_px`` wide and laid out again, so that a narrow window shows all of it."""
    if figure.get_figwidth() * dpi > width_px:
        figure.set_figwidth(width_px / dpi)
        figure.tight_layout()
    return figure


def caption_html(text: str, width_px: int = SHOWN_PX) -> str:
    """HTML of a caption ``width_px`` wide whose long lines wrap instead of widening what it sits under."""
    return f'<div style="width:{width_px}px; white-space:normal; overflow-wrap:anywhere; line-height:1.3">{text}</div>'


def caption(width_px: int = SHOWN_PX) -> widgets.HTML:
    """An empty caption widget of fixed width."""
    return widgets.HTML(layout=widgets.Layout(width=f"{width_px}px"))


def say_when_all_zero(figure: Figure, message: str) -> Figure:
    """Write ``message`` across a bar chart whose bars are all zero (instead of an axis from -0.04 to 0.04)."""
    axis = figure.axes[0]
    if all(patch.get_height() == 0 for patch in axis.patches):
        axis.set_ylim(0, 1)
        axis.text(0.5, 0.5, message, transform=axis.transAxes, ha="center", va="center", color="dimgray")
    return figure


def activation_html(activation: float) -> str:
    """The activation a render reached, in bold, with why its image stays grey when that is exactly 0."""
    if activation == 0:
        return ("<b>activation 0.00</b>: the unit is 0 on the starting image, and a unit at 0 behind a ReLU gets no "
                "gradient, so the image cannot move; try another channel")
    return f"<b>activation {activation:.2f}</b>"


def error_html(error: Exception) -> str:
    """One red line naming the error, for an explorer's ``error`` widget."""
    lines = str(error).strip().splitlines()
    return f'<span style="color:{ERROR_COLOUR}">{type(error).__name__}: {html.escape(lines[0] if lines else "")}</span>'


# ---- controls -----------------------------------------------------------------------------------------------------

def dropdown(options, description: str, value=None, width: str = CONTROL_LAYOUT["width"]) -> widgets.Dropdown:
    """A dropdown wide enough to show its labels whole."""
    control = widgets.Dropdown(options=list(options), description=description, layout=widgets.Layout(width=width),
                               style=CONTROL_STYLE)
    if value is not None:
        control.value = value
    return control


def int_slider(description: str, maximum: int, value: int = 0, minimum: int = 0, step: int = 1) -> widgets.IntSlider:
    """An integer slider that acts on release and keeps its track width."""
    return widgets.IntSlider(value=value, min=minimum, max=maximum, step=step, description=description,
                             continuous_update=False, layout=CONTROL_LAYOUT, style=CONTROL_STYLE)


def choice_slider(description: str, options: Sequence[tuple[str, float]], value: float) -> widgets.SelectionSlider:
    """A slider over a few round values (label, value): titles and caches never see 50.1187."""
    control = widgets.SelectionSlider(options=list(options), value=value, description=description,
                                      continuous_update=False, layout=CONTROL_LAYOUT, style=CONTROL_STYLE)
    control.label = list(options)[control.index][0]  # ipywidgets leaves label "" when it starts on the first option
    return control


def decades(weakest: int, count: int = 5) -> list[tuple[str, float]]:
    """``count`` strengths a decade apart from 10**weakest, with round labels: "0.1", "1", ..., "1000"."""
    return [(f"{10.0 ** power:g}", 10.0 ** power) for power in range(weakest, weakest + count)]


def fit_slider(slider: widgets.IntSlider, count: int) -> None:
    """Give an index slider the range 0 .. count - 1, keeping its value where it still fits."""
    with slider.hold_trait_notifications():
        slider.value = min(slider.value, count - 1)
        slider.max = count - 1


def set_options(control: widgets.Dropdown, options: Sequence, keep) -> None:
    """Replace a dropdown's options, choosing ``keep`` if it is offered (else the first); valid at every moment."""
    options = list(options)
    control.options = options
    control.value = keep if keep in options else options[0]


def unit_layers(model: LoadedModel) -> list[str]:
    """The model's privileged unit layers (``model.unit_layers``: right after a ReLU-like activation), else its main layers."""
    return list(model.unit_layers or model.main_layers)


def layer_choices(model: LoadedModel, layers: Sequence[str] | None, wanted: str | None = None) -> list[str]:
    """``layers`` (default: the privileged unit layers), with ``wanted`` added in network order if missing."""
    names = list(layers) if layers is not None else unit_layers(model)
    if wanted is not None and wanted not in names:
        order = model.layer_names
        names = sorted([*names, wanted], key=lambda name: order.index(name) if name in order else len(order))
    return names


TRANSFORM_STRENGTHS = (("none", 0.0), ("half", 0.5), ("standard", 1.0), ("1.5x", 1.5), ("double", 2.0))
PENALTY_STRENGTHS = (("off", 0.0), ("1", 1.0), ("10", 10.0), ("100", 100.0), ("1000", 1000.0), ("10000", 10000.0))


def scaled_transforms(strength: float) -> tuple[Transform, ...]:
    """Lucid's standard transforms with every amount times ``strength``: 0 is none, 1 is render()'s default."""
    if strength <= 0:
        return ()
    spread, degrees = 0.1 * strength, round(10 * strength)
    return (Pad(round(12 * strength)), Jitter(round(8 * strength)), RandomScale(scale_range(1 - spread, 1 + spread, 0.02)),
            RandomRotate(tuple(float(angle) for angle in range(-degrees, degrees + 1))), Jitter(round(4 * strength)))


# ---- what every explorer shares ---------------------------------------------------------------------------------

class Explorer:
    """Base of the explorers: ``error`` (a red one-line message) and control callbacks that report into it.

    A subclass builds its controls and ``self.widget``, connects controls with ``react``, and draws in ``redraw``.
    """

    widget: widgets.Widget

    def __init__(self) -> None:
        self.error = widgets.HTML()
        self.renders: list[LiveRender] = []
        self._quiet = 0

    def live_render(self, update_every: int = 8, background: bool = False) -> LiveRender:
        """A LiveRender that reports into this explorer and that ``wait`` and ``show`` wait for."""
        live = LiveRender(self.report, update_every, background)
        self.renders.append(live)
        return live

    def react(self, control: widgets.Widget, handler: Callable[[], None]) -> None:
        """Call ``handler()`` when ``control``'s value changes, except while the explorer itself changes it."""
        control.observe(lambda change: self.reporting(handler) if not self._quiet else None, names="value")

    @contextmanager
    def quietly(self) -> Iterator[None]:
        """Within this block, control changes made by the explorer call no handlers."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    def reporting(self, handler: Callable[[], None]) -> None:
        """Run ``handler()``; an error shows as a red line in the explorer, not only in the kernel's log."""
        self.error.value = ""
        try:
            handler()
        except Exception as error:
            self.report(error)

    def report(self, error: Exception) -> None:
        """Show ``error`` as the explorer's red line."""
        self.error.value = error_html(error)

    def redraw(self) -> None:
        """Draw the current setting."""
        raise NotImplementedError

    def wait(self) -> None:
        """Block until every background render of this explorer has finished or stopped."""
        for live in self.renders:
            live.wait()

    def show(self) -> widgets.Widget:
        """Draw once (waiting for its renders) and return the widget for display."""
        self.redraw()
        self.wait()
        return self.widget


class RenderSuperseded(Exception):
    """Raised inside a render's step callback when a newer request has replaced it; LiveRender catches it."""


class LiveRender:
    """Runs one explorer's renders: a progress bar and the image every few steps; a newer request stops the old one.

    ``start(total_steps, compute, finish)`` calls ``compute(watch)``, where ``watch(image)`` gives a render()
    step callback that moves the bar, refreshes ``image`` every ``update_every`` steps, and raises
    RenderSuperseded once a newer ``start`` has come; then ``finish(result)`` shows the result. With
    ``background`` the work runs in a thread (after the previous one has stopped), so the kernel keeps
    answering the controls while it optimizes; otherwise it runs inside ``start``.
    """

    def __init__(self, report: Callable[[Exception], None], update_every: int = 8, background: bool = False):
        self.report, self.update_every, self.background = report, update_every, background
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width=f"{SHOWN_PX}px"))
        self.latest = 0
        self.thread: threading.Thread | None = None

    def start(self, total_steps: int, compute: Callable[[Callable[[widgets.Image], StepCallback]], object],
              finish: Callable[[object], None]) -> None:
        """Run ``compute`` then ``finish`` for a new request, superseding any render still running."""
        self.latest += 1
        ticket = self.latest
        if not self.background:
            self._run(ticket, total_steps, compute, finish)
            return
        previous = self.thread
        self.thread = threading.Thread(target=self._run_after, args=(previous, ticket, total_steps, compute, finish),
                                       daemon=True)
        self.thread.start()

    def supersede(self) -> None:
        """Stop whatever render is running (the new setting needs none: it is cached)."""
        self.latest += 1
        self.progress.value = self.progress.max

    def wait(self) -> None:
        """Block until the background render (if any) has finished or stopped."""
        if self.thread is not None:
            self.thread.join()

    def _run_after(self, previous: threading.Thread | None, ticket: int, total_steps: int, compute, finish) -> None:
        if previous is not None:
            previous.join()
        try:
            self._run(ticket, total_steps, compute, finish)
        except Exception as error:
            self.report(error)

    def _run(self, ticket: int, total_steps: int, compute, finish) -> None:
        if ticket != self.latest:
            return
        self.progress.max, self.progress.value, self.progress.bar_style = max(1, total_steps), 0, "info"
        done = 0

        def watch(image: widgets.Image) -> StepCallback:
            def step(step: int, images: torch.Tensor, value: float) -> None:
                nonlocal done
                if ticket != self.latest:
                    raise RenderSuperseded()
                done += 1
                self.progress.value = done
                if step % self.update_every == 0:
                    image.value = png_bytes(to_pil(images[0].cpu()))
            return step

        try:
            result = compute(watch)
        except RenderSuperseded:
            return
        if ticket == self.latest:
            finish(result)
            self.progress.value, self.progress.bar_style = self.progress.max, "success"


# ---- chapter 01 ---------------------------------------------------------------------------------------------------

class FeatureExplorer(Explorer):
    """Layer dropdown and channel slider showing one photo's feature map and the channel's top patches."""

    def __init__(self, model: LoadedModel, photo: Image.Image, patches: ImageSet,
                 layers: Sequence[str] | None = None, top_k: int = 8):
        super().__init__()
        self.model, self.photo, self.patches, self.top_k = model, photo, patches, top_k
        self._maxima: dict[str, ChannelMaxima] = {}
        self._maps = {}
        names = layer_choices(model, layers)
        self.layer = dropdown(names, "layer")
        self.channel = int_slider("channel", model.layer(names[0]).channels - 1)
        self.info = widgets.HTML()
        self.maps_image, self.examples_image = picture(), picture()
        self.react(self.layer, self._on_layer)
        self.react(self.channel, self.redraw)
        self.widget = widgets.VBox([row([self.layer, self.channel]), self.error, self.info,
                                    self.maps_image, self.examples_image])

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

    def _on_layer(self) -> None:
        with self.quietly():
            fit_slider(self.channel, self.model.layer(self.layer.value).channels)
        self.redraw()

    def redraw(self) -> None:
        """Draw the feature map and the top patches for the current layer and channel."""
        layer, channel = self.layer.value, self.channel.value
        maps = self.photo_maps(layer)
        figure, axes = plt.subplots(1, 2, figsize=(7, 3.2))
        axes[0].imshow(self.photo)
        axes[0].set_title("photo")
        shown = maps[channel] if maps.ndim == 3 else maps[channel].view(1, 1)
        image = axes[1].imshow(shown.numpy(), cmap="viridis")
        axes[1].set_title(f"channel {channel} feature map")
        figure.colorbar(image, ax=axes[1], fraction=0.046)
        for axis in axes:
            axis.axis("off")
        show_figure(self.maps_image, figure)
        show_figure(self.examples_image, dataset_examples_figure(self.patches, self.maxima(layer), channel,
                                                                 k=self.top_k, columns=EXAMPLE_COLUMNS))
        self.info.value = (f"<b>{layer}</b>: {maps.shape[0]} channels at "
                           f"{'x'.join(map(str, maps.shape[1:])) or '1'} resolution")


def feature_explorer(model: LoadedModel, photo: Image.Image, patches: ImageSet,
                     layers: Sequence[str] | None = None, top_k: int = 8) -> FeatureExplorer:
    """Build and display a FeatureExplorer; returns it so a notebook (or a test) can drive its controls."""
    explorer = FeatureExplorer(model, photo, patches, layers, top_k)
    display(explorer.show())
    return explorer


# ---- chapter 02 ---------------------------------------------------------------------------------------------------

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


class RenderExplorer(Explorer):
    """Layer, channel, objective kind, steps, transforms' strength and a frequency penalty; renders live, cached.

    ``background=True`` (as in the notebooks) renders in a thread so that a newer setting can stop the render.
    """

    def __init__(self, model: LoadedModel, layers: Sequence[str] | None = None, size: int = 128,
                 steps: int = 128, max_steps: int = 512, update_every: int = 8, background: bool = False):
        super().__init__()
        self.model, self.size = model, size
        self.cache: dict[tuple, tuple[RenderResult, float]] = {}
        names = layer_choices(model, layers)
        self.layer = dropdown(names, "layer", names[len(names) // 2])
        self.channel = int_slider("channel", model.layer(self.layer.value).channels - 1)
        self.kind = dropdown(UNIT_KINDS, "objective")
        self.steps = int_slider("steps", max_steps, steps, minimum=8, step=8)
        self.transforms = choice_slider("transforms", TRANSFORM_STRENGTHS, 1.0)
        self.frequency = choice_slider("frequency pen.", PENALTY_STRENGTHS, 0.0)
        self.image, self.status = picture(), caption()
        self.live = self.live_render(update_every, background)
        self.react(self.layer, self._on_layer)
        for control in (self.channel, self.kind, self.steps, self.transforms, self.frequency):
            self.react(control, self.redraw)
        controls = widgets.VBox([self.layer, self.channel, self.kind, self.steps, self.transforms, self.frequency])
        self.widget = widgets.VBox([self.error, row([controls, widgets.VBox([self.image, self.live.progress,
                                                                             self.status])])])

    def _on_layer(self) -> None:
        with self.quietly():
            fit_slider(self.channel, self.model.layer(self.layer.value).channels)
        self.redraw()

    def key(self) -> tuple:
        """The current setting, as a cache key."""
        return (self.layer.value, self.channel.value, self.kind.value, self.steps.value, self.transforms.value,
                self.frequency.value)

    def objective(self) -> Objective:
        """The unit objective the controls describe (without the penalty)."""
        return unit_objective(self.kind.value, self.layer.value, self.channel.value)

    def redraw(self) -> None:
        """Show the current setting from the cache, or start rendering it live."""
        key, unit = self.key(), self.objective()
        if key in self.cache:
            self.live.supersede()
            self._show(unit, self.cache[key])
            return
        strength, steps = self.frequency.value, self.steps.value
        full = unit + strength * frequency_penalty() if strength else unit

        def compute(watch):
            result = render(self.model, full, size=self.size, steps=steps, transforms=scaled_transforms(key[4]),
                            progress=False, callback=watch(self.image))
            self.cache[key] = (result, float(evaluate(self.model, unit, result.images)[0]))
            return self.cache[key]

        self.status.value = caption_html(f"rendering {html.escape(unit.description)} ...")
        self.live.start(steps, compute, lambda shown: self._show(unit, shown))

    def _show(self, unit: Objective, shown: tuple[RenderResult, float]) -> None:
        result, activation = shown
        self.image.value = png_bytes(result.pil[0])
        penalty = f", frequency penalty {self.frequency.label}" if self.frequency.value else ""
        self.status.value = caption_html(f"{html.escape(unit.description)}{penalty}, transforms "
                                         f"{self.transforms.label}: {activation_html(activation)}")


# ---- chapter 03 ---------------------------------------------------------------------------------------------------

class RegularizationExplorer(Explorer):
    """Layer and channel, one slider per regularizer strength (greyed while its checkbox is off) and toggles for the
    parameterization; the regularized render is shown beside the unregularized one, with the unit's activation under
    each (results cached)."""

    # per penalty, as powers of ten: the weakest strength offered and the one a tick starts at (section 2's, rounded)
    PENALTIES = {"frequency": (1, 4), "total_variation": (-1, 2), "l1": (-1, 2), "blur": (1, 4), "denoiser": (0, 3)}

    def __init__(self, model: LoadedModel, denoiser: DenoisingAutoencoder | None = None,
                 layers: Sequence[str] | None = None, layer: str | None = None, channel: int = 0,
                 size: int = 128, steps: int = 128, update_every: int = 8, background: bool = False):
        super().__init__()
        self.model, self.denoiser, self.size, self.steps = model, denoiser, size, steps
        self.cache: dict[tuple[str, int, Regularization], RenderResult] = {}
        names = layer_choices(model, layers, layer)
        self.layer = dropdown(names, "layer", layer or names[len(names) // 2])
        self.channel = int_slider("channel", model.layer(self.layer.value).channels - 1, channel)
        self.switches = {name: widgets.Checkbox(value=False, description=f"use {name}", indent=False,
                                                layout=widgets.Layout(width="150px"))
                         for name in self.PENALTIES}
        self.strengths = {name: choice_slider("strength", decades(weakest), 10.0 ** start)
                          for name, (weakest, start) in self.PENALTIES.items()}
        for slider in self.strengths.values():
            slider.disabled, slider.style.description_width = True, "70px"
        self.jitter = int_slider("jitter px", 16)
        self.rotate = widgets.IntSlider(value=0, min=0, max=30, description="rotate deg", continuous_update=False,
                                        layout=CONTROL_LAYOUT, style=CONTROL_STYLE)
        self.scale = widgets.FloatSlider(value=0, min=0, max=0.3, step=0.02, description="scale +-",
                                         continuous_update=False, layout=CONTROL_LAYOUT, style=CONTROL_STYLE)
        self.fourier = widgets.Checkbox(value=False, description="Fourier parameterization", indent=False)
        self.decorrelate = widgets.Checkbox(value=False, description="decorrelate colours", indent=False)
        self.latent = widgets.Checkbox(value=False, description="denoiser latent", indent=False,
                                       disabled=denoiser is None)
        self.switches["denoiser"].disabled = denoiser is None
        self.baseline_image, self.current_image = picture(), picture()
        self.baseline_label, self.current_label = caption(), caption()
        self.live = self.live_render(update_every, background)
        for name, switch in self.switches.items():
            switch.observe(lambda change, name=name: setattr(self.strengths[name], "disabled", not change["new"]),
                           names="value")
        self.react(self.layer, self._on_layer)
        for control in [self.channel, self.jitter, self.rotate, self.scale, self.fourier, self.decorrelate,
                        self.latent, *self.switches.values(), *self.strengths.values()]:
            self.react(control, self.redraw)
        controls = [self.layer, self.channel, self.jitter, self.rotate, self.scale]
        controls += [row([self.switches[name], self.strengths[name]]) for name in self.PENALTIES]
        controls += [self.fourier, self.decorrelate, self.latent]
        pictures = row([widgets.VBox([self.baseline_image, self.baseline_label]),
                        widgets.VBox([self.current_image, self.live.progress, self.current_label])])
        self.widget = widgets.VBox([self.error, row([widgets.VBox(controls), pictures])])

    def _on_layer(self) -> None:
        with self.quietly():
            fit_slider(self.channel, self.model.layer(self.layer.value).channels)
        self.redraw()

    @property
    def unit(self) -> Objective:
        """The channel objective the layer and channel controls name."""
        return channel_objective(self.layer.value, self.channel.value)

    def settings(self) -> Regularization:
        """The Regularization that the controls describe now."""
        strength = {name: self.strengths[name].value if self.switches[name].value else 0.0 for name in self.strengths}
        return Regularization(jitter=self.jitter.value, rotate_degrees=float(self.rotate.value),
                              scale_spread=self.scale.value, fourier=self.fourier.value,
                              decorrelate=self.decorrelate.value, latent=self.latent.value, **strength)

    def result(self, settings: Regularization, callback: StepCallback | None = None) -> RenderResult:
        """Render the current unit under ``settings``, once; later calls come from the cache."""
        key = (self.layer.value, self.channel.value, settings)
        if key not in self.cache:
            self.cache[key] = render_regularized(self.model, self.unit, settings, self.denoiser, size=self.size,
                                                 steps=self.steps, progress=False, callback=callback)
        return self.cache[key]

    def redraw(self) -> None:
        """Show the baseline and the current settings side by side, rendering live what is not cached yet."""
        layer, channel, settings = self.layer.value, self.channel.value, self.settings()
        pairs = ((Regularization(), self.baseline_image, self.baseline_label),
                 (settings, self.current_image, self.current_label))
        missing = [pair for pair in pairs if (layer, channel, pair[0]) not in self.cache]
        if not missing:
            self.live.supersede()
            self._show(pairs, [self.cache[layer, channel, chosen] for chosen, _, _ in pairs])
            return

        def compute(watch):
            return [self.result(chosen, watch(image)) for chosen, image, _ in pairs]

        for chosen, _, label in missing:
            label.value = caption_html(f"{html.escape(chosen.label())}<br>rendering ...")
        self.live.start(len(missing) * self.steps, compute, lambda results: self._show(pairs, results))

    def _show(self, pairs, results: list[RenderResult]) -> None:
        for (chosen, image, label), result in zip(pairs, results):
            image.value = png_bytes(result.pil[0])
            label.value = caption_html(f"{html.escape(chosen.label())}<br>"
                                       f"{activation_html(float(result.final_scores[0]))}")


# ---- chapter 04 ---------------------------------------------------------------------------------------------------

DIVERSITY_STRENGTHS = (("0", 0.0), ("3", 3.0), ("10", 10.0), ("30", 30.0), ("100", 100.0), ("300", 300.0))


class DiversityExplorer(Explorer):
    """Layer, channel, diversity, transforms' strength and frequency penalty: a batch of images for one channel,
    pushed apart by the diversity term, each titled with the activation it reached (rendered live, cached).

    The default diversity, 3, keeps every image exciting a post-activation channel (measured on
    blocks.9.depthwise.act[3], 128 px, 128 steps: 4.3-5.4, against 5.3-5.5 with none); at 10 one image of four
    fell to activation 0, and at 30 (64 px, fast mode) all four did.
    """

    def __init__(self, model: LoadedModel, layers: Sequence[str] | None = None, layer: str | None = None,
                 channel: int = 0, count: int = 4, size: int = 128, steps: int = 128, update_every: int = 8,
                 background: bool = False, diversity: float = 3.0):
        super().__init__()
        self.model, self.count, self.size, self.steps = model, count, size, steps
        self.cache: dict[tuple, RenderResult] = {}
        names = layer_choices(model, layers, layer)
        self.layer = dropdown(names, "layer", layer or names[len(names) // 2])
        self.channel = int_slider("channel", model.layer(self.layer.value).channels - 1, channel)
        self.diversity = choice_slider("diversity", DIVERSITY_STRENGTHS, diversity)
        self.transforms = choice_slider("transforms", TRANSFORM_STRENGTHS, 1.0)
        self.frequency = choice_slider("frequency pen.", PENALTY_STRENGTHS, 0.0)
        self.image, self.status = picture(SHOWN_PX), caption(2 * SHOWN_PX)
        self.grid = picture(count * SHOWN_PX // 2)
        self.live = self.live_render(update_every, background)
        self.react(self.layer, self._on_layer)
        for control in (self.channel, self.diversity, self.transforms, self.frequency):
            self.react(control, self.redraw)
        controls = widgets.VBox([self.layer, self.channel, self.diversity, self.transforms, self.frequency])
        self.widget = widgets.VBox([self.error, row([controls, widgets.VBox([self.image, self.live.progress])]),
                                    self.status, self.grid])

    def _on_layer(self) -> None:
        with self.quietly():
            fit_slider(self.channel, self.model.layer(self.layer.value).channels)
        self.redraw()

    def key(self) -> tuple:
        """The current setting, as a cache key."""
        return (self.layer.value, self.channel.value, self.diversity.value, self.transforms.value,
                self.frequency.value)

    def redraw(self) -> None:
        """Show the current setting's batch from the cache, or start rendering it live (first image shown)."""
        key = self.key()
        if key in self.cache:
            self.live.supersede()
            self._show(key, self.cache[key])
            return
        layer, channel, diversity, transforms, frequency = key
        self.model.layer(layer).check_channel(channel)
        objective = channel_objective(layer, channel)
        if diversity:
            objective = objective + diversity * diversity_objective(layer)
        if frequency:
            objective = objective + frequency * frequency_penalty()

        def compute(watch):
            self.cache[key] = render(self.model, objective, batch=self.count, size=self.size, steps=self.steps,
                                     transforms=scaled_transforms(transforms), progress=False,
                                     callback=watch(self.image))
            return self.cache[key]

        self.status.value = caption_html("rendering ...", 2 * SHOWN_PX)
        self.live.start(self.steps, compute, lambda result: self._show(key, result))

    def _show(self, key: tuple, result: RenderResult) -> None:
        layer, channel, diversity, transforms, frequency = key
        reached = evaluate(self.model, channel_objective(layer, channel), result.images).tolist()
        self.image.value = png_bytes(result.pil[0])
        figure = image_grid(list(result.images), titles=[f"activation {value:.1f}" for value in reached],
                            columns=self.count, cell_inches=SHOWN_PX / 2 / FIGURE_DPI,
                            suptitle=f"{layer}[{channel}], diversity {self.diversity.label}")
        show_figure(self.grid, figure)
        self.status.value = caption_html(
            f"{layer}[{channel}]: diversity {self.diversity.label}, transforms {self.transforms.label}, frequency "
            f"penalty {self.frequency.label}; mean {activation_html(float(np.mean(reached)))}", 2 * SHOWN_PX)


# ---- chapter 05 ---------------------------------------------------------------------------------------------------

class TextCellExplorer(Explorer):
    """Cell slider, feature dropdown and text-sample selector over precomputed cell activations.

    Choosing a feature jumps to the cell that tracks it best; the text is coloured by the chosen cell.
    """

    def __init__(self, samples: dict[str, tuple[str, dict[str, torch.Tensor]]], report: dict[str, dict],
                 kind: str = "tanh(c)"):
        super().__init__()
        self.samples, self.report_by_feature = samples, report
        first_text, first_states = next(iter(samples.values()))
        self.sample = dropdown(samples, "text", width="460px")
        self.kind = dropdown(first_states, "activation", kind)
        self.feature = dropdown(["(any)"] + list(report), "feature")
        self.cell = int_slider("cell", first_states[kind].shape[1] - 1)
        self.text = widgets.HTML()
        self.react(self.feature, self._on_feature)
        for control in (self.sample, self.kind, self.cell):
            self.react(control, self.redraw)
        self.widget = widgets.VBox([row([self.sample, self.feature]), row([self.kind, self.cell]),
                                    self.error, self.text])

    def _on_feature(self) -> None:
        if self.feature.value in self.report_by_feature:
            best = self.report_by_feature[self.feature.value]["best"][0]
            with self.quietly():
                self.kind.value = best.activation
                self.cell.value = best.cell
        self.redraw()

    def redraw(self) -> None:
        """Colour the chosen sample by the chosen cell."""
        from interpviz.text import colour_text_html

        sample_text, states = self.samples[self.sample.value]
        values = states[self.kind.value][:, self.cell.value]
        self.text.value = colour_text_html(sample_text, values.numpy(), title=f"cell {self.cell.value}, {self.kind.value}")


class TabularUnitExplorer(Explorer):
    """Layer and unit sliders for the credit MLP: the unit's preferred profile next to its top rows."""

    def __init__(self, model, data, plausibility: float = 0.1):
        from interpviz.tabular import HIDDEN_LAYERS

        super().__init__()
        self.model, self.data, self.plausibility = model, data, plausibility
        self.cache: dict[tuple[str, int], object] = {}
        self.layer = dropdown(HIDDEN_LAYERS, "layer")
        self.unit = int_slider("unit", self._units() - 1)
        self.chart, self.rows = picture(), widgets.HTML()
        self.react(self.layer, self._on_layer)
        self.react(self.unit, self.redraw)
        self.widget = widgets.VBox([row([self.layer, self.unit]), self.error, self.chart, self.rows])

    def _units(self) -> int:
        from interpviz.tabular import unit_activations

        return unit_activations(self.model, self.data, self.layer.value).shape[1]

    def _on_layer(self) -> None:
        with self.quietly():
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
        figure, axes = plt.subplots(1, 2, figsize=(MAX_SHOWN_PX / FIGURE_DPI, 3.2), sharey=True)
        z = (np.array([preferred.profile[name] for name in FEATURES]) - self.data.mean) / self.data.std
        axes[0].barh(FEATURES, z, color=["tab:red" if v > 0 else "tab:blue" for v in z])
        axes[0].set_title(f"{self.layer.value} unit {self.unit.value}: preferred input\n(activation "
                          f"{preferred.activation:.2f}; best row {preferred.best_row_activation:.2f})", fontsize=9)
        axes[0].set_xlabel("standard deviations from the mean")
        axes[1].barh(FEATURES, correlations, color="tab:gray")
        axes[1].set_xlim(-1, 1)
        axes[1].set_title("correlation of the unit with\neach feature over the data", fontsize=9)
        figure.tight_layout()
        show_figure(self.chart, figure)
        rows = "".join("<tr>" + "".join(f"<td>{value:.1f}</td>" for value in self.data.features[i])
                       + f"<td>{int(self.data.default[i])}</td></tr>" for i in top)
        self.rows.value = ("<b>top 5 rows</b><table><tr>" + "".join(f"<th>{name}</th>" for name in FEATURES)
                           + f"<th>default</th></tr>{rows}</table>")


# ---- chapters 06 to 08 --------------------------------------------------------------------------------------------

class UnitView:
    """One unit's dissection label, its top images with masks, and its feature visualization, side by side."""

    def __init__(self, live: LiveRender, images_per_unit: int = 4, render_steps: int | None = 64, size: int = 96):
        self.images_per_unit, self.render_steps, self.size = images_per_unit, render_steps, size
        self.cache: dict[tuple, RenderResult] = {}
        self.label, self.top_images = caption(), picture(images_per_unit * SHOWN_PX // 2)
        self.visualization = picture(SHOWN_PX // 2 * 2)
        self.live = live
        shown = [self.label, self.top_images]
        if render_steps:
            shown.append(widgets.VBox([self.visualization, self.live.progress]))
        # flex-start: a Box stretches its children to the row's height by default, which drew the top-images strip
        # (128 px high) 288 px high beside the visualization and its progress bar
        self.widget = row(shown)

    def draw(self, model: LoadedModel, dataset: BrodenDataset, result: LayerDissection, unit: int,
             label_html: str, key: tuple) -> None:
        """Show ``label_html``, the unit's top images and (rendered live, cached under ``key``) its visualization."""
        self.label.value = caption_html(label_html)
        overlays = top_image_overlays(model, dataset, result, unit, self.images_per_unit)
        figure = image_grid(overlays, titles=[f"top {i + 1}" for i in range(len(overlays))], columns=len(overlays),
                            cell_inches=SHOWN_PX / 2 / FIGURE_DPI)
        show_figure(self.top_images, figure)
        if not self.render_steps:
            return
        if key in self.cache:
            self.live.supersede()
            self.visualization.value = png_bytes(self.cache[key].pil[0])
            return

        def compute(watch):
            self.cache[key] = render(model, channel_objective(result.layer, unit), size=self.size,
                                     steps=self.render_steps, progress=False, callback=watch(self.visualization))
            return self.cache[key]

        self.live.start(self.render_steps, compute, lambda rendered: setattr(self.visualization, "value",
                                                                              png_bytes(rendered.pil[0])))


class DissectionExplorer(Explorer):
    """Layer, unit, IoU threshold and quantile for a dissection: the unit's labels, top images with masks and
    feature visualization (``render_steps=None``: no visualization).

    The IoU threshold only recounts (instant); a new quantile re-runs the dissection of that layer once.
    """

    QUANTILES = (0.001, 0.0025, 0.005, 0.01, 0.02)

    def __init__(self, model: LoadedModel, dataset: BrodenDataset, results: dict[str, LayerDissection],
                 images_per_unit: int = 4, render_steps: int | None = 64, size: int = 96, background: bool = False):
        super().__init__()
        self.model, self.dataset = model, dataset
        first = next(iter(results.values()))
        self.cache: dict[tuple[str, float], LayerDissection] = {
            (layer, result.settings.quantile): result for layer, result in results.items()
        }
        self.base_settings = first.settings
        self.layer = dropdown(results, "layer")
        self.unit = int_slider("unit", first.units - 1)
        self.iou_threshold = widgets.FloatSlider(value=first.settings.iou_threshold, min=0.0, max=0.3, step=0.01,
                                                 description="IoU thr.", continuous_update=False,
                                                 layout=CONTROL_LAYOUT, style=CONTROL_STYLE)
        self.quantile = dropdown(self.QUANTILES, "quantile", first.settings.quantile)
        self.summary, self.details = widgets.HTML(), widgets.HTML()
        self.view = UnitView(self.live_render(background=background), images_per_unit, render_steps, size)
        for control in (self.layer, self.quantile):
            self.react(control, self._on_dissection_change)
        for control in (self.unit, self.iou_threshold):
            self.react(control, self.redraw)
        controls = row([widgets.VBox([self.layer, self.unit]), widgets.VBox([self.iou_threshold, self.quantile])])
        self.widget = widgets.VBox([controls, self.error, self.summary, self.view.widget, self.details])

    def result(self) -> LayerDissection:
        """The dissection for the current layer and quantile (computed once, then cached)."""
        key = (self.layer.value, self.quantile.value)
        if key not in self.cache:
            settings = dataclasses.replace(self.base_settings, quantile=self.quantile.value)
            self.cache[key] = dissect(self.model, self.dataset, self.layer.value, settings, progress=False)[self.layer.value]
        return self.cache[key]

    def _on_dissection_change(self) -> None:
        with self.quietly():
            fit_slider(self.unit, self.result().units)
        self.redraw()

    def redraw(self) -> None:
        """Show the layer's detector counts, the unit's best concept per category, top images and visualization."""
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
        self.details.value = (f"<table><tr><th>category</th><th>best concept</th><th>IoU</th></tr>{rows}</table>")
        self.view.draw(self.model, self.dataset, result, unit,
                       f"unit {unit}: <b>{overall.label}</b> ({overall.category}), IoU {overall.iou:.3f}: {verdict}",
                       (result.layer, unit))


class ExperimentExplorer(Explorer):
    """Experiment, layer, unit and IoU-threshold selectors over finished dissections: counts per network, recounted
    live, and the chosen unit's label in each network (with its top images and visualization when ``models`` and
    ``dataset`` are given).

    ``experiments`` maps an experiment's name to its networks' dissections: {experiment: {network: {layer: result}}};
    ``models`` maps network names to the networks (LoadedModel), for the unit views.
    """

    def __init__(self, experiments: dict[str, dict[str, dict[str, LayerDissection]]], iou_threshold: float = 0.04,
                 models: dict[str, LoadedModel] | None = None, dataset: BrodenDataset | None = None,
                 images_per_unit: int = 3, render_steps: int | None = None, size: int = 96, background: bool = False):
        super().__init__()
        self.experiments, self.models, self.dataset = experiments, models or {}, dataset
        self.images_per_unit, self.render_steps, self.size, self.background = images_per_unit, render_steps, size, background
        self.experiment = dropdown(experiments, "experiment", width="520px")
        layers = self._layers()
        self.layer = dropdown(layers, "layer", layers[-1])
        self.unit = int_slider("unit", self._units() - 1)
        self.iou_threshold = widgets.FloatSlider(value=iou_threshold, min=0.0, max=0.3, step=0.01,
                                                 description="IoU thr.", continuous_update=False,
                                                 layout=CONTROL_LAYOUT, style=CONTROL_STYLE)
        self.chart, self.table, self.unit_rows = picture(), widgets.HTML(), widgets.VBox()
        self.views: dict[str, UnitView] = {}
        self.chart_title = ""
        self.react(self.experiment, self._on_experiment)
        self.react(self.layer, self._on_layer)
        for control in (self.unit, self.iou_threshold):
            self.react(control, self.redraw)
        self.widget = widgets.VBox([self.experiment, row([self.layer, self.unit, self.iou_threshold]),
                                    self.error, self.chart, self.table, self.unit_rows])

    def _layers(self) -> list[str]:
        networks = self.experiments[self.experiment.value].values()
        return [layer for layer in next(iter(networks)) if all(layer in results for results in networks)]

    def _units(self) -> int:
        return min(result.units for result in self.results().values())

    def _on_experiment(self) -> None:
        with self.quietly():
            set_options(self.layer, self._layers(), self.layer.value)
            fit_slider(self.unit, self._units())
        self.redraw()

    def _on_layer(self) -> None:
        with self.quietly():
            fit_slider(self.unit, self._units())
        self.redraw()

    def results(self) -> dict[str, LayerDissection]:
        """The chosen layer's dissection for every network of the chosen experiment."""
        return {network: results[self.layer.value] for network, results in self.experiments[self.experiment.value].items()}

    def _view(self, network: str) -> UnitView:
        if network not in self.views:
            self.views[network] = UnitView(self.live_render(background=self.background), self.images_per_unit,
                                           self.render_steps, self.size)
        return self.views[network]

    def redraw(self) -> None:
        """Unique detectors by category for each network, the table of counts, and the unit in each network."""
        from interpviz.experiments import counts_figure, detector_table, table_html

        results, threshold, unit = self.results(), self.iou_threshold.value, self.unit.value
        values = {network: result.unique_detectors_by_category(threshold) for network, result in results.items()}
        self.chart_title = f"{self.experiment.value}: {self.layer.value}, IoU > {threshold:.2f}"
        figure = counts_figure(values, self.chart_title)
        show_figure(self.chart, say_when_all_zero(narrowed(figure), f"no detectors at IoU > {threshold:.2f}"))
        self.table.value = table_html(detector_table(results, threshold))
        shown = []
        for network, result in results.items():
            best = result.best()[unit]
            verdict = "detector" if best.iou > threshold else "not a detector"
            label = (f"<b>{html.escape(network)}</b>, {result.layer} unit {unit}: <b>{best.label}</b> "
                     f"({best.category}), IoU {best.iou:.3f}: {verdict}")
            if network in self.models and self.dataset is not None:
                view = self._view(network)
                view.draw(self.models[network], self.dataset, result, unit, label,
                          (self.experiment.value, network, result.layer, unit))
                shown.append(view.widget)
            else:
                shown.append(widgets.HTML(caption_html(label, 2 * SHOWN_PX)))
        self.unit_rows.children = shown


class RotationExplorer(Explorer):
    """Rotation amount and unit: the detector count along the sweep, and the unit's label and top images at a.

    ``model`` is the network the sweep rotated (a SmallCNN or a LoadedModel); ``units`` are the units offered.
    """

    def __init__(self, model, dataset: BrodenDataset, sweep, units: Sequence[int] = (0, 1, 2, 3),
                 images_per_unit: int = 3):
        super().__init__()
        self.model, self.dataset, self.sweep = model, dataset, sweep
        self.units, self.images_per_unit = list(units), images_per_unit
        self.amount = widgets.SelectionSlider(options=[(f"{a:.2f}", i) for i, a in enumerate(sweep.amounts)],
                                              description="rotation a", continuous_update=False,
                                              layout=CONTROL_LAYOUT, style=CONTROL_STYLE)
        self.unit = dropdown([("all shown: " + ", ".join(map(str, self.units)), -1)]
                             + [(f"unit {u}", u) for u in range(sweep.results[0].units)], "unit")
        self.summary, self.curve, self.top_images = widgets.HTML(), picture(), picture()
        for control in (self.amount, self.unit):
            self.react(control, self.redraw)
        self.widget = widgets.VBox([row([self.amount, self.unit]), self.error, self.summary,
                                    row([self.curve, self.top_images])])

    def redraw(self) -> None:
        """Mark the amount on the curve; show the chosen units' labels and top images in the rotated basis."""
        from interpviz.experiments import rotated_network
        from interpviz.rotation import fractional_rotation

        index = self.amount.value
        amount, result = self.sweep.amounts[index], self.sweep.results[index]
        unique = self.sweep.unique_detectors_paper()
        self.summary.value = (f"a = {amount:.2f}: {unique[index]} unique detectors (the paper's count: distinct "
                              f"concepts per category, summed), {len(result.detectors())} detector units of "
                              f"{result.units} (a = 0: {unique[0]} unique)")
        network = rotated_network(self.model, fractional_rotation(self.sweep.rotation, amount), self.sweep.layer)
        figure, axis = plt.subplots(figsize=(4, 2.4))
        axis.plot(self.sweep.amounts, unique, marker="o")
        axis.axvline(amount, color="tab:red")
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("rotation amount a")
        axis.set_ylabel("unique detectors\n(summed per category)")
        figure.tight_layout()
        show_figure(self.curve, figure)
        units = self.units if self.unit.value < 0 else [self.unit.value]
        show_figure(self.top_images, top_images_figure(network, self.dataset, result, units, self.images_per_unit,
                                                       cell_inches=1.5))
