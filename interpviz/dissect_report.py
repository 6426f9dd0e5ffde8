"""Pictures and reports of a dissection: top images with the unit's mask, charts, an HTML page per layer."""

from __future__ import annotations

import base64
import html
import io
import shutil
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image

from interpviz.broden import BrodenDataset
from interpviz.dissect import LayerDissection, binarize, image_batch
from interpviz.hooks import forward_to
from interpviz.models.zoo import LoadedModel
from interpviz.plotting import image_grid


@torch.no_grad()
def unit_masks(model: LoadedModel, dataset: BrodenDataset, result: LayerDissection, units: Sequence[int],
               image_indices: Sequence[int]) -> torch.Tensor:
    """Boolean (images, units, H, W) masks by the mask rule (``dissect.binarize``) at image resolution.

    Ties at the threshold are drawn in full, also for a ``ties="top_q"`` dissection.
    """
    images = image_batch(model, dataset, image_indices)
    activations = forward_to(model, images, result.layer, detach=True)
    values = result.settings.sign * activations[result.layer][:, list(units)].float().cpu()
    upsampled = F.interpolate(values, size=images.shape[-2:], mode="bilinear", align_corners=False)
    threshold = result.settings.sign * result.thresholds[list(units)]
    return binarize(upsampled, threshold[None, :, None, None], result.above_minimum[list(units)][None, :, None, None])


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with everything outside ``mask`` dimmed and the mask's border drawn in yellow."""
    shown = image.astype(np.float32) * np.where(mask[..., None], 1.0, 0.3)
    border = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    shown[border] = (255, 220, 0)
    return shown.astype(np.uint8)


def top_image_overlays(model: LoadedModel, dataset: BrodenDataset, result: LayerDissection, unit: int,
                       count: int = 4) -> list[np.ndarray]:
    """The unit's top images (highest maximum activation) with its mask overlaid."""
    indices = result.top_images[unit, :count].tolist()
    masks = unit_masks(model, dataset, result, [unit], indices)
    return [overlay(dataset.load_image(i), masks[n, 0].numpy()) for n, i in enumerate(indices)]


def top_images_figure(model: LoadedModel, dataset: BrodenDataset, result: LayerDissection, units: Sequence[int],
                      count: int = 4, cell_inches: float = 1.6) -> Figure:
    """One row per unit: its top images with its mask, the first titled with the unit's best concept and IoU."""
    best = result.best()
    images, titles = [], []
    for unit in units:
        overlays = top_image_overlays(model, dataset, result, unit, count)
        images += overlays
        titles += [f"unit {unit}: {best[unit].label} ({best[unit].iou:.2f})"] + [""] * (len(overlays) - 1)
    return image_grid(images, titles=titles, columns=count, cell_inches=cell_inches)


def detectors_by_category_figure(result: LayerDissection, iou_threshold: float | None = None) -> Figure:
    """Bar chart: how many detector units each category has in one layer."""
    counts = result.detectors_by_category(iou_threshold)
    figure, axis = plt.subplots(figsize=(5, 2.8))
    axis.bar(list(counts), list(counts.values()), color="tab:blue")
    threshold = result.settings.iou_threshold if iou_threshold is None else iou_threshold
    axis.set_title(f"{result.layer}: {sum(counts.values())} of {result.units} units are detectors (IoU > {threshold:g})")
    axis.set_ylabel("detector units")
    figure.tight_layout()
    return figure


def detectors_across_layers_figure(results: dict[str, LayerDissection], iou_threshold: float | None = None) -> Figure:
    """Stacked bars: unique detectors per category (the paper's count) for each layer, in order."""
    layers = list(results)
    categories = results[layers[0]].used_categories
    figure, axis = plt.subplots(figsize=(1.2 * len(layers) + 3, 3.2))
    bottom = np.zeros(len(layers))
    for category in categories:
        values = np.array([results[layer].unique_detectors_by_category(iou_threshold).get(category, 0) for layer in layers])
        axis.bar(layers, values, bottom=bottom, label=category)
        bottom += values
    axis.set_ylabel("unique detectors")
    axis.set_title("unique detectors by category and layer")
    axis.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    figure.tight_layout()
    return figure


def category_share(results: dict[str, LayerDissection], layers: Sequence[str], categories: Sequence[str]) -> float:
    """Share of the unique detectors (the paper's count) of ``layers`` that fall in ``categories``; NaN if none."""
    counts = [results[layer].unique_detectors_by_category() for layer in layers]
    total = sum(sum(count.values()) for count in counts)
    return sum(count.get(category, 0) for count in counts for category in categories) / total if total else float("nan")


def _data_uri(image: np.ndarray | Figure, size: int | None = None) -> str:
    buffer = io.BytesIO()
    if isinstance(image, Figure):
        image.savefig(buffer, format="png", dpi=90)
        plt.close(image)
        kind = "png"
    else:
        picture = Image.fromarray(image)
        if size:
            picture = picture.resize((size, size))
        picture.save(buffer, format="JPEG", quality=85)
        kind = "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode()}"


SORT_SCRIPT = """<script>
function sortBy(column, numeric) {
  const body = document.querySelector('tbody');
  const rows = Array.from(body.rows);
  const ascending = body.dataset.column == column ? body.dataset.order != 'asc' : !numeric;
  rows.sort((a, b) => {
    const x = a.cells[column].dataset.key, y = b.cells[column].dataset.key;
    const order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
    return ascending ? order : -order;
  });
  body.dataset.column = column; body.dataset.order = ascending ? 'asc' : 'desc';
  rows.forEach(row => body.appendChild(row));
}
</script>"""


def write_layer_report(model: LoadedModel, dataset: BrodenDataset, result: LayerDissection, out: Path,
                       images_per_unit: int = 4) -> Path:
    """``out/<layer>.html``: every unit's label, category, IoU and top images with masks, sortable."""
    out.mkdir(parents=True, exist_ok=True)
    best = result.best()
    wide_units = set(result.wide_masks())
    rows = []
    for unit in best:
        pictures = top_image_overlays(model, dataset, result, unit.unit, images_per_unit)
        thumbnails = "".join(f'<img src="{_data_uri(p, 96)}" width="96" height="96">' for p in pictures)
        detector = "detector" if unit.iou > result.settings.iou_threshold else ""
        fraction = float(result.mask_fraction[unit.unit])
        wide = " wide" if unit.unit in wide_units else ""
        rows.append(
            f'<tr class="{detector}{wide}"><td data-key="{unit.unit}">{unit.unit}</td>'
            f'<td data-key="{html.escape(unit.label)}">{html.escape(unit.label)}</td>'
            f'<td data-key="{html.escape(unit.category)}">{html.escape(unit.category)}</td>'
            f'<td data-key="{unit.iou:.6f}">{unit.iou:.3f}</td>'
            f'<td data-key="{fraction:.6f}">{100 * fraction:.2f}%{" (ties)" if wide else ""}</td><td>{thumbnails}</td></tr>'
        )
    chart = _data_uri(detectors_by_category_figure(result))
    page = out / f"{result.layer}.html"
    settings = result.settings
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Dissection of {html.escape(model.name)} {html.escape(result.layer)}</title>"
        "<style>body{font-family:sans-serif} td,th{padding:2px 8px} tr.detector{background:#eef6ee}"
        " tr.wide td:nth-child(5){color:#b00;font-weight:bold}"
        " th{cursor:pointer;text-align:left}</style>"
        f"{SORT_SCRIPT}</head><body><h1>{html.escape(model.name)} {html.escape(result.layer)}</h1>"
        f"<p>{len(dataset)} images; quantile {settings.quantile:g} ({settings.direction}), IoU threshold "
        f"{settings.iou_threshold:g}, union rule '{settings.union_rule}'. "
        f"{len(result.detectors())} detector units, {result.unique_detectors()} unique concepts (distinct top labels), "
        f"{sum(result.unique_detectors_by_category().values())} summed over categories. "
        f"{len(wide_units)} units (marked 'ties') have masks over twice the quantile: their top values tie. "
        "Click a column title to sort.</p>"
        f"<img src='{chart}'><table><thead><tr><th onclick='sortBy(0,true)'>unit</th>"
        "<th onclick='sortBy(1,false)'>label</th><th onclick='sortBy(2,false)'>category</th>"
        "<th onclick='sortBy(3,true)'>IoU</th><th onclick='sortBy(4,true)'>mask share</th>"
        "<th>top images (mask outlined)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></body></html>\n",
        encoding="utf-8",
    )
    return page


def check_report_folder(out: Path) -> None:
    """Raise FileExistsError unless ``out`` is new, an empty folder, or an earlier report (it holds index.html)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{str(out)!r} is a file; give a folder for the report")
    if out.is_dir() and any(out.iterdir()) and not (out / "index.html").is_file():
        raise FileExistsError(f"{str(out)!r} holds files but no report (no index.html); give a new folder, "
                              f"an empty one, or an earlier report to replace")


def _move_into_place(finished: Path, out: Path) -> None:
    """Rename the folder ``finished`` to ``out``; an earlier ``out`` is moved aside first and deleted afterwards."""
    previous = out.with_name(f".{out.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if out.exists():
        out.rename(previous)
    try:
        finished.rename(out)
    except BaseException:
        if previous.exists():
            previous.rename(out)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def write_report(model: LoadedModel, dataset: BrodenDataset, results: dict[str, LayerDissection], out: str | Path,
                 images_per_unit: int = 4) -> Path:
    """For every layer, ``<layer>-tally.csv`` and ``<layer>.html``; plus ``index.html`` linking them.

    ``out`` may be new, an empty folder, or an earlier report. The files are written into the hidden folder
    ``.<out>.partial`` beside it, which replaces ``out`` only once complete: an interruption (Ctrl-C) or an
    error leaves ``out`` as it was and no partial report.
    """
    out = Path(out).resolve()
    check_report_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        _write_report_files(model, dataset, results, partial, images_per_unit)
        _move_into_place(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out / "index.html"


def _write_report_files(model: LoadedModel, dataset: BrodenDataset, results: dict[str, LayerDissection], out: Path,
                        images_per_unit: int) -> None:
    """Write the tallies, the layer pages and index.html into the folder ``out``."""
    items = []
    for layer, result in results.items():
        result.write_tally(out / f"{layer}-tally.csv")
        page = write_layer_report(model, dataset, result, out, images_per_unit)
        items.append(
            f"<li><a href='{page.name}'>{html.escape(layer)}</a>: {len(result.detectors())} detectors of "
            f"{result.units} units, {result.unique_detectors()} unique concepts "
            f"(<a href='{layer}-tally.csv'>tally.csv</a>)</li>"
        )
    chart = _data_uri(detectors_across_layers_figure(results)) if len(results) > 1 else ""
    index = out / "index.html"
    index.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>Dissection of {html.escape(model.name)}</title>"
        f"</head><body><h1>Network Dissection of {html.escape(model.name)}</h1><ul>{''.join(items)}</ul>"
        + (f"<img src='{chart}'>" if chart else "") + "</body></html>\n",
        encoding="utf-8",
    )
