"""Feature atlas: every channel of some layers, maximized and minimized, with its top dataset examples, as HTML.

``write_atlas(model, layers, out)`` writes a static, browsable atlas (open ``out/index.html``; no server needed)::

    atlas.json                  what the atlas holds: model, layers and their channel counts, settings
    index.html                  one line per layer, linking to its page
    LAYER/index.html            a grid of every channel's visualization, each linking to the channel's page
    LAYER/0007.html             channel 7: visualization, negative visualization, dataset examples
    LAYER/0007.png, 0007-negative.png, 0007-examples.png, 0007.json

A channel's ``.json`` is written last: a channel is finished when its ``.json`` exists, and a restarted run
skips finished channels. The channels of a layer are rendered in batches of ``settings.batch`` consecutive
channels (one render of 2 x batch images: the first half maximizes the channels, the second half minimizes
them), each batch from its own seed, so that a channel's images do not depend on how many processes share
the work. Under ``torchrun`` rank r renders batches r, r + N, ... of every layer into the same folder (with
several machines, ``out`` must be a folder they share); after a barrier rank 0 writes the pages of the layers
and the index.

``AtlasExplorer`` browses a finished atlas instantly, and renders a channel live when the atlas lacks it.
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import ipywidgets as widgets
import torch
from PIL import Image
from tqdm.auto import tqdm

from interpviz import distributed
from interpviz.activations import ChannelMaxima, channel_maxima
from interpviz.data import ImageSet, patch_set
from interpviz.images import tile, to_pil
from interpviz.models.zoo import LoadedModel
from interpviz.optvis.objectives import channel_objective
from interpviz.optvis.render import RenderResult, render
from interpviz.widgets import Explorer, caption, caption_html, dropdown, int_slider, picture, png_bytes

ACTIVATION_KINDS = ("ReLU", "ReLU6", "LeakyReLU", "GELU", "SiLU", "Hardswish", "Mish", "ELU", "Sigmoid", "Tanh")
MANIFEST = "atlas.json"
THUMBNAIL_PX = 96


@dataclass(frozen=True)
class AtlasSettings:
    """How each channel is rendered and how many dataset examples it shows."""

    size: int = 128
    steps: int = 256
    seed: int = 0
    batch: int = 16
    examples: int = 8

    def __post_init__(self):
        for name in ("size", "steps", "batch", "examples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a whole number of at least 0, got {self.seed!r}")


def default_layers(model: LoadedModel) -> list[str]:
    """The model's privileged unit layers: ``model.unit_layers``, or, where it names none, every activation's output."""
    chosen = list(model.unit_layers)
    if not chosen:
        chosen = [info.name for info in model.layers if info.kind in ACTIVATION_KINDS and len(info.output_shape) == 3]
    if not chosen:
        raise ValueError(f"{model.name} has no activation layer with channels to choose by default; name the layers")
    return chosen


def channel_stem(channel: int) -> str:
    """The file name stem of a channel in its layer's folder: 7 -> '0007'."""
    return f"{channel:04d}"


def layer_folder(out: Path, layer: str) -> Path:
    """The folder of one layer's pages and images."""
    return out / layer.replace("/", "_")


def is_finished(out: Path, layer: str, channel: int) -> bool:
    """Whether the atlas in ``out`` holds ``channel`` of ``layer`` completely."""
    return (layer_folder(out, layer) / f"{channel_stem(channel)}.json").is_file()


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name, so that a file either exists whole or not at all."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _png(image: Image.Image) -> bytes:
    """The PNG file of ``image``, as bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def render_channels(model: LoadedModel, layer: str, channels: Sequence[int], settings: AtlasSettings,
                    progress: bool = False) -> RenderResult:
    """One render of 2 x len(channels) images: image i maximizes channels[i], image len + i minimizes it.

    The seed is ``settings.seed`` plus the first channel, so a batch gives the same images in any process.
    """
    info = model.layer(layer)
    count = len(channels)
    objective = sum(channel_objective(layer, info.check_channel(c)).on(i) for i, c in enumerate(channels))
    objective = objective + sum((-channel_objective(layer, c)).on(count + i) for i, c in enumerate(channels))
    return render(model, objective, batch=2 * count, size=settings.size, steps=settings.steps,
                  seed=settings.seed + channels[0], progress=progress)


@dataclass(frozen=True)
class ChannelEntry:
    """A channel's mean in its visualization and in its negative one, and its dataset examples with their maxima."""

    layer: str
    channel: int
    score: float
    negative_score: float
    example_captions: list[str]
    example_values: list[float]


def channel_entry(layer: str, channel: int, score: torch.Tensor, negative_score: torch.Tensor,
                  patches: ImageSet, maxima: ChannelMaxima, examples: int) -> tuple[ChannelEntry, list[int]]:
    """A channel's entry (its mean in both images) and the patch numbers of its top ``examples`` dataset examples."""
    indices, values = maxima.top(channel, k=examples)
    entry = ChannelEntry(layer, channel, float(score), float(negative_score),
                         [patches.captions[i] for i in indices], [float(v) for v in values])
    return entry, indices


def write_channel(out: Path, entry: ChannelEntry, positive: torch.Tensor, negative: torch.Tensor,
                  examples: torch.Tensor, channels: int) -> None:
    """Write one channel's images, page and (last, marking it finished) its ``.json``."""
    folder = layer_folder(out, entry.layer)
    stem = channel_stem(entry.channel)
    _write_bytes(folder / f"{stem}.png", _png(to_pil(positive)))
    _write_bytes(folder / f"{stem}-negative.png", _png(to_pil(negative)))
    _write_bytes(folder / f"{stem}-examples.png", _png(tile(examples, columns=len(examples))))
    _write_bytes(folder / f"{stem}.html", channel_page(entry, channels).encode())
    _write_bytes(folder / f"{stem}.json", json.dumps(dataclasses.asdict(entry), indent=1).encode())


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em} img{image-rendering:pixelated} "
            ".grid a{display:inline-block;margin:2px;text-align:center;font-size:11px;color:#333}</style>"
            f"</head><body>\n{body}\n</body></html>\n")


def channel_page(entry: ChannelEntry, channels: int) -> str:
    """The HTML page of one channel: both visualizations and the dataset examples, with their values."""
    links = [f"<a href='index.html'>{html.escape(entry.layer)}</a>", "<a href='../index.html'>atlas</a>"]
    if entry.channel > 0:
        links.insert(0, f"<a href='{channel_stem(entry.channel - 1)}.html'>&larr; channel {entry.channel - 1}</a>")
    if entry.channel + 1 < channels:
        links.append(f"<a href='{channel_stem(entry.channel + 1)}.html'>channel {entry.channel + 1} &rarr;</a>")
    stem = channel_stem(entry.channel)
    rows = "".join(f"<tr><td>{number + 1}</td><td>{html.escape(text)}</td><td>{value:.3f}</td></tr>"
                   for number, (text, value) in enumerate(zip(entry.example_captions, entry.example_values)))
    body = (f"<p>{' | '.join(links)}</p><h1>{html.escape(entry.layer)}, channel {entry.channel}</h1>"
            f"<table><tr><th>visualization (maximized, mean {entry.score:.3f})</th>"
            f"<th>negative (minimized, mean {entry.negative_score:.3f})</th></tr>"
            f"<tr><td><img src='{stem}.png' width='256'></td><td><img src='{stem}-negative.png' width='256'></td></tr>"
            f"</table><h2>Dataset examples (largest activation first)</h2><img src='{stem}-examples.png'>"
            f"<table><tr><th>#</th><th>image</th><th>max activation</th></tr>{rows}</table>")
    return _page(f"{entry.layer} channel {entry.channel}", body)


def layer_page(model_name: str, layer: str, channels: int) -> str:
    """The HTML page of one layer: a grid of every channel's visualization, linking to the channel pages."""
    cells = "".join(f"<a href='{channel_stem(c)}.html'><img src='{channel_stem(c)}.png' width='{THUMBNAIL_PX}' "
                    f"title='channel {c}'><br>{c}</a>" for c in range(channels))
    body = (f"<p><a href='../index.html'>atlas</a></p><h1>{html.escape(model_name)}: {html.escape(layer)}</h1>"
            f"<p>{channels} channels; click one for its negative visualization and dataset examples.</p>"
            f"<div class='grid'>{cells}</div>")
    return _page(f"{model_name} {layer}", body)


def index_page(manifest: dict) -> str:
    """The atlas's front page: the model, the settings and one link per layer."""
    settings = ", ".join(f"{name} {value}" for name, value in manifest["settings"].items())
    items = "".join(f"<li><a href='{html.escape(layer_folder(Path('.'), layer).as_posix())}/index.html'>"
                    f"{html.escape(layer)}</a> ({channels} channels)</li>"
                    for layer, channels in manifest["layers"].items())
    body = (f"<h1>Feature atlas of {html.escape(manifest['model'])}</h1><p>Rendered with {html.escape(settings)}; "
            f"dataset examples from {manifest['patches']} image patches.</p><ul>{items}</ul>")
    return _page(f"{manifest['model']} atlas", body)


def _check_or_write_manifest(out: Path, manifest: dict) -> None:
    """Write the manifest, or check that the one in ``out`` describes the same atlas (a restart)."""
    path = out / MANIFEST
    if path.is_file():
        found = json.loads(path.read_text())
        if found != manifest:
            raise ValueError(f"{out} holds an atlas of other settings ({found}); to resume it, use its settings, "
                             f"or choose another folder")
        return
    _write_bytes(path, json.dumps(manifest, indent=1).encode())


def default_patches() -> ImageSet:
    """The dataset-example images of an atlas when none are given: the bundled photos' standard patch set."""
    return patch_set()


def write_atlas(model: LoadedModel, layers: Sequence[str] | None, out: str | Path,
                settings: AtlasSettings = AtlasSettings(), patches: ImageSet | None = None,
                progress: bool = True) -> Path:
    """Render every channel of ``layers`` (default: ``default_layers``) into an HTML atlas in ``out``; its index.

    Finished channels already in ``out`` are skipped. Under torchrun each rank renders its share of the
    channel batches and rank 0 writes the pages of the layers and the index once all are done.
    """
    out = Path(out)
    names = default_layers(model) if layers is None else list(layers)
    if not names:
        raise ValueError("give at least one layer")
    channel_counts = {}
    for name in names:
        info = model.layer(name)
        if len(info.output_shape) != 3:
            raise ValueError(f"layer {name!r} has no feature maps (its output is {info.output_shape} per image); "
                             "an atlas renders convolutional channels")
        channel_counts[name] = info.channels
    patches = default_patches() if patches is None else patches
    manifest = {"model": model.name, "layers": channel_counts, "settings": dataclasses.asdict(settings),
                "patches": len(patches)}
    with distributed.rank_zero_first():
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            layer_folder(out, name).mkdir(exist_ok=True)
        _check_or_write_manifest(out, manifest)
    for name, channels in channel_counts.items():
        batches = [list(range(start, min(start + settings.batch, channels)))
                   for start in range(0, channels, settings.batch)]
        mine = [batch for batch in distributed.shard(batches)
                if not all(is_finished(out, name, channel) for channel in batch)]
        if not mine:
            continue
        maxima = channel_maxima(model, patches, name, progress=False)
        for batch in tqdm(mine, desc=f"atlas {name}", disable=not progress):
            result = render_channels(model, name, batch, settings)
            count = len(batch)
            for i, channel in enumerate(batch):
                entry, examples = channel_entry(name, channel, result.final_scores[i], -result.final_scores[count + i],
                                                patches, maxima, settings.examples)
                write_channel(out, entry, result.images[i], result.images[count + i], patches.to_tensor(examples),
                              channels)
    distributed.barrier()
    index = out / "index.html"
    if distributed.is_main():
        missing = [f"{name}:{channel}" for name, channels in channel_counts.items()
                   for channel in range(channels) if not is_finished(out, name, channel)]
        if missing:
            raise OSError(f"{len(missing)} channels are missing from {out} (first: {missing[0]}) although every "
                          "process has finished: with several machines, --out must be a folder that all of them share")
        for name, channels in channel_counts.items():
            _write_bytes(layer_folder(out, name) / "index.html", layer_page(model.name, name, channels).encode())
        _write_bytes(index, index_page(manifest).encode())
    return index


def read_manifest(out: str | Path) -> dict:
    """The ``atlas.json`` of an atlas folder: model, layers with their channel counts, settings."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{Path(out)} holds no atlas ({MANIFEST} is missing); write one with write_atlas "
                                "or `interpviz atlas`")
    return json.loads(path.read_text())


class AtlasExplorer(Explorer):
    """Layer dropdown and channel slider over an atlas: instant where the atlas has the channel, else live.

    A channel missing from the atlas is rendered live with ``model`` (and the atlas's settings), with dataset
    examples from ``patches``; live results are kept in memory, never written into the atlas.
    """

    def __init__(self, out: str | Path, model: LoadedModel | None = None, patches: ImageSet | None = None):
        super().__init__()
        self.out, self.model, self._patches = Path(out), model, patches
        manifest = read_manifest(self.out)
        self.layers: dict[str, int] = manifest["layers"]
        self.settings = AtlasSettings(**manifest["settings"])
        self._maxima: dict[str, ChannelMaxima] = {}
        self._live: dict[tuple[str, int], tuple[bytes, bytes, bytes, str]] = {}
        first = next(iter(self.layers))
        self.layer = dropdown(self.layers, "layer")
        self.channel = int_slider("channel", self.layers[first] - 1)
        self.source = widgets.HTML()
        self.positive, self.negative = picture(), picture()
        self.examples = picture(2 * 256)
        self.captions = caption(2 * 256)
        self.react(self.layer, self._on_layer)
        self.react(self.channel, self.redraw)
        self.widget = widgets.VBox([widgets.HBox([self.layer, self.channel]), self.error, self.source,
                                    widgets.HBox([self.positive, self.negative]), self.examples, self.captions])

    def _on_layer(self) -> None:
        with self.quietly():
            self.channel.value = min(self.channel.value, self.layers[self.layer.value] - 1)
            self.channel.max = self.layers[self.layer.value] - 1
        self.redraw()

    def patches(self) -> ImageSet:
        """The dataset-example images for live renders (the standard patch set unless given), made once."""
        if self._patches is None:
            self._patches = default_patches()
        return self._patches

    def from_atlas(self, layer: str, channel: int) -> tuple[bytes, bytes, bytes, str]:
        """PNGs (visualization, negative, examples) and the examples' caption, read from the atlas."""
        folder, stem = layer_folder(self.out, layer), channel_stem(channel)
        entry = json.loads((folder / f"{stem}.json").read_text())
        images = [(folder / f"{stem}{suffix}.png").read_bytes() for suffix in ("", "-negative", "-examples")]
        text = self._examples_caption(entry["example_captions"], entry["example_values"])
        return images[0], images[1], images[2], text

    def rendered_live(self, layer: str, channel: int) -> tuple[bytes, bytes, bytes, str]:
        """The same PNGs and caption, rendered now with the model (once per channel, then kept in memory)."""
        if (layer, channel) not in self._live:
            if self.model is None:
                raise ValueError(f"channel {channel} of {layer} is not in the atlas {self.out}; pass model= to "
                                 "AtlasExplorer to render it live, or finish the atlas")
            result = render_channels(self.model, layer, [channel], self.settings)
            if layer not in self._maxima:
                self._maxima[layer] = channel_maxima(self.model, self.patches(), layer, progress=False)
            entry, examples = channel_entry(layer, channel, result.final_scores[0], -result.final_scores[1],
                                            self.patches(), self._maxima[layer], self.settings.examples)
            sheet = tile(self.patches().to_tensor(examples), columns=len(examples))
            self._live[(layer, channel)] = (_png(to_pil(result.images[0])), _png(to_pil(result.images[1])),
                                            _png(sheet), self._examples_caption(entry.example_captions,
                                                                                 entry.example_values))
        return self._live[(layer, channel)]

    @staticmethod
    def _examples_caption(captions: list[str], values: list[float]) -> str:
        return "dataset examples: " + "; ".join(f"{html.escape(c)} ({v:.2f})" for c, v in zip(captions, values))

    def redraw(self) -> None:
        """Show the current channel: from the atlas when it has it, else rendered live."""
        layer, channel = self.layer.value, self.channel.value
        in_atlas = is_finished(self.out, layer, channel)
        positive, negative, examples, text = (self.from_atlas if in_atlas else self.rendered_live)(layer, channel)
        self.positive.value = png_bytes(Image.open(io.BytesIO(positive)))
        self.negative.value = png_bytes(Image.open(io.BytesIO(negative)))
        self.examples.value = png_bytes(Image.open(io.BytesIO(examples)), 2 * 256)
        self.captions.value = caption_html(text, 2 * 256)
        self.source.value = (f"<b>{html.escape(layer)}</b>, channel {channel}: "
                             f"{'from the atlas' if in_atlas else 'rendered live (not in the atlas)'}; "
                             "left maximized, right minimized")
