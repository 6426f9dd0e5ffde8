"""The Broden dataset format (Bau & Zhou et al. 2017): read it, write it, and fetch the real one.

A Broden folder holds ``index.csv`` (one row per image: ``image,split,ih,iw,sh,sw,color,object,part,
material,scene,texture``), ``category.csv``, ``label.csv`` and one ``c_<category>.csv`` per category, with
images and masks under ``images/``. A category's column lists ``;``-joined mask PNGs (several planes for
parts) and label numbers that cover the whole image (scene and texture in the real Broden). A mask pixel
holds the label number as R + 256 * G; label 0 means unlabelled. Masks are half the image size. A label's
primary category is the one in which its coverage (from ``c_<category>.csv``) is largest.
"""

from __future__ import annotations

import csv
import io
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from interpviz import settings

INDEX_COLUMNS = ["image", "split", "ih", "iw", "sh", "sw", "color", "object", "part", "material", "scene", "texture"]
CATEGORY_COLUMNS = ["name", "first", "last", "count", "frequency"]
LABEL_COLUMNS = ["number", "name", "category", "frequency", "coverage", "syns"]
CATEGORY_LABEL_COLUMNS = ["code", "number", "name", "frequency", "coverage"]
BRODEN_URL = "http://netdissect.csail.mit.edu/data/broden1_{resolution}.zip"


class BrodenFormatError(ValueError):
    """A Broden file that is malformed; the message names the file and the row."""


@dataclass(frozen=True)
class Label:
    """A concept: its number (the value in masks), name, primary category, and pixel coverage."""

    number: int
    name: str
    category: str
    frequency: int
    coverage: float


@dataclass(frozen=True)
class IndexRow:
    """One image: file, split, image and mask sizes, mask files and scalar labels per category, index.csv row."""

    image: str
    split: str
    image_size: tuple[int, int]
    segmentation_size: tuple[int, int]
    masks: dict[str, list[str]] = field(default_factory=dict)
    scalars: dict[str, list[int]] = field(default_factory=dict)
    csv_row: int = 0


def _read_csv(path: Path, columns: list[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"Broden file {str(path)!r} is missing")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise BrodenFormatError(
            f"{path.name}: row {line} is not UTF-8 text (byte {raw[error.start]:#04x}); save the file as UTF-8"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or [name.strip() for name in header[: len(columns)]] != columns:
        raise BrodenFormatError(f"{path.name}: header {header} does not start with {columns}")
    rows = []
    for number, row in enumerate(reader, start=2):
        if not any(value.strip() for value in row):
            continue
        if len(row) < len(columns) - (1 if columns[-1] == "syns" else 0):
            raise BrodenFormatError(f"{path.name}: row {number} has {len(row)} fields, expected {len(columns)}")
        rows.append({name: (row[i] if i < len(row) else "") for i, name in enumerate(columns)})
        rows[-1]["_row"] = str(number)
    return rows


def _as_int(value: str, file: str, row: str, column: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BrodenFormatError(f"{file}: row {row}: column {column!r} should be a whole number, got {value!r}") from None


class BrodenDataset:
    """A Broden-format dataset on disk: categories, labels, and per-image images and concept masks."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"Broden folder {str(self.root)!r} does not exist")
        self.images_root = self.root / "images"
        self.categories = [row["name"] for row in _read_csv(self.root / "category.csv", CATEGORY_COLUMNS)]
        self.labels = self._read_labels()
        self.rows = self._read_index()

    def _read_labels(self) -> list[Label]:
        rows = _read_csv(self.root / "label.csv", LABEL_COLUMNS)
        coverage: dict[int, dict[str, float]] = {}
        for category in self.categories:
            for row in _read_csv(self.root / f"c_{category}.csv", CATEGORY_LABEL_COLUMNS):
                number = _as_int(row["number"], f"c_{category}.csv", row["_row"], "number")
                try:
                    coverage.setdefault(number, {})[category] = float(row["coverage"])
                except ValueError:
                    raise BrodenFormatError(f"c_{category}.csv: row {row['_row']}: bad coverage {row['coverage']!r}") from None
        if rows and rows[0]["number"].strip() != "0":
            rows.insert(0, {"number": "0", "name": "-", "frequency": "0", "_row": "(filled in)"})
        labels = []
        for expected, row in enumerate(rows):
            number = _as_int(row["number"], "label.csv", row["_row"], "number")
            if number != expected:
                raise BrodenFormatError(f"label.csv: row {row['_row']}: label numbers must run 0, 1, 2, ...; got {number}")
            by_category = coverage.get(number, {})
            primary = max(by_category, key=by_category.get) if by_category else ""
            frequency = _as_int(row["frequency"] or "0", "label.csv", row["_row"], "frequency")
            labels.append(Label(number, row["name"], primary, frequency, by_category.get(primary, 0.0)))
        return labels

    def _read_index(self) -> list[IndexRow]:
        rows = []
        for row in _read_csv(self.root / "index.csv", INDEX_COLUMNS):
            number = row["_row"]
            sizes = [_as_int(row[name], "index.csv", number, name) for name in ("ih", "iw", "sh", "sw")]
            masks, scalars = {}, {}
            for category in self.categories:
                if category not in row:
                    raise BrodenFormatError(f"index.csv has no column for category {category!r}")
                for entry in (entry.strip() for entry in row[category].split(";")):
                    if entry.lower().endswith(".png"):
                        self.resolve(entry, f"index.csv row {number}")
                        masks.setdefault(category, []).append(entry)
                    elif entry:
                        scalars.setdefault(category, []).append(self._label_number(entry, number, category))
            self.resolve(row["image"], f"index.csv row {number}")
            rows.append(IndexRow(row["image"], row["split"], (sizes[0], sizes[1]), (sizes[2], sizes[3]), masks, scalars,
                                 int(number)))
        return rows

    def _label_number(self, entry: str, row: str, category: str) -> int:
        if not (entry.isascii() and entry.isdigit()):
            raise BrodenFormatError(
                f"index.csv: row {row}: column {category!r} holds mask files (.png) and label numbers "
                f"(non-negative whole numbers) joined by ';', got {entry!r}"
            )
        if int(entry) >= len(self.labels):
            raise BrodenFormatError(
                f"index.csv: row {row}: column {category!r} names label {entry}, which label.csv does not list "
                f"(it has labels 0 to {len(self.labels) - 1})"
            )
        return int(entry)

    def resolve(self, relative: str, where: str) -> Path:
        """The path of a file named in the CSVs; paths that leave the dataset folder are refused."""
        path = (self.images_root / relative).resolve()
        if self.images_root != path and self.images_root not in path.parents:
            raise BrodenFormatError(f"{where}: path {relative!r} points outside the dataset folder")
        return path

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def pixel_categories(self) -> list[str]:
        """Categories with per-pixel masks in at least one image."""
        return [c for c in self.categories if any(c in row.masks for row in self.rows)]

    def load_image(self, index: int) -> np.ndarray:
        """The image as a uint8 (H, W, 3) array."""
        row = self.rows[index]
        path = self.resolve(row.image, f"index.csv image {index}")
        if not path.is_file():
            raise FileNotFoundError(f"image {str(path)!r} (index.csv image {index}) is missing")
        with Image.open(path) as image:
            array = np.array(image.convert("RGB"))
        if array.shape[:2] != row.image_size:
            raise BrodenFormatError(
                f"image {row.image!r} is {array.shape[0]}x{array.shape[1]} (height x width), but index.csv row "
                f"{row.csv_row} says ih={row.image_size[0]}, iw={row.image_size[1]}"
            )
        return array

    def load_masks(self, index: int) -> dict[str, list[np.ndarray]]:
        """Per pixel category, the label-number planes (int32 arrays at segmentation size) of one image."""
        row = self.rows[index]
        planes: dict[str, list[np.ndarray]] = {}
        for category, files in row.masks.items():
            for name in files:
                path = self.resolve(name, f"index.csv image {index}")
                if not path.is_file():
                    raise FileNotFoundError(f"mask {str(path)!r} (index.csv image {index}, {category}) is missing")
                with Image.open(path) as mask:
                    rgb = np.asarray(mask.convert("RGB")).astype(np.int32)
                decoded = rgb[..., 0] + 256 * rgb[..., 1]
                if decoded.shape != row.segmentation_size:
                    raise BrodenFormatError(
                        f"mask {name!r} is {decoded.shape}, index.csv says {row.segmentation_size} (image {index})"
                    )
                unknown = decoded[decoded >= len(self.labels)]
                if unknown.size:
                    raise BrodenFormatError(
                        f"mask {name!r} (index.csv row {row.csv_row}, {category}) has pixel value "
                        f"{int(unknown.max())}, a label number that label.csv does not list "
                        f"(it has labels 0 to {len(self.labels) - 1})"
                    )
                planes.setdefault(category, []).append(decoded)
        return planes


def encode_mask(labels: np.ndarray) -> Image.Image:
    """A label-number array as a Broden mask PNG: R = number % 256, G = number // 256."""
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    rgb[..., 0] = labels % 256
    rgb[..., 1] = labels // 256
    return Image.fromarray(rgb)


def write_tables(root: Path, categories: list[str], labels: list[tuple[str, str]], rows: list[dict[str, str]],
                 label_stats: dict[int, dict[str, tuple[int, float]]]) -> None:
    """Write index.csv, category.csv, label.csv and c_<category>.csv for a dataset described in memory.

    ``labels`` lists (name, primary category) for numbers 1, 2, ...; ``label_stats[number][category]`` is
    (frequency in images, coverage) of that label in that category.
    """
    with (root / "index.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, INDEX_COLUMNS)
        writer.writeheader()
        writer.writerows({name: row.get(name, "") for name in INDEX_COLUMNS} for row in rows)
    with (root / "label.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(LABEL_COLUMNS)
        writer.writerow([0, "-", ";".join(f"{c}(0)" for c in categories), 0, 0.0, ""])
        for number, (name, _) in enumerate(labels, start=1):
            stats = label_stats.get(number, {})
            frequency = sum(count for count, _ in stats.values())
            coverage = sum(value for _, value in stats.values())
            writer.writerow([number, name, ";".join(f"{c}({stats[c][0]})" for c in stats), frequency, f"{coverage:.6f}", ""])
    with (root / "category.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CATEGORY_COLUMNS)
        for category in categories:
            members = [n for n in range(1, len(labels) + 1) if category in label_stats.get(n, {})]
            first, last = (min(members), max(members)) if members else (0, 0)
            frequency = sum(label_stats[n][category][0] for n in members)
            writer.writerow([category, first, last, len(members), frequency])
    for category in categories:
        with (root / f"c_{category}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CATEGORY_LABEL_COLUMNS)
            code = 1
            for number, (name, _) in enumerate(labels, start=1):
                if category in label_stats.get(number, {}):
                    count, coverage = label_stats[number][category]
                    writer.writerow([code, number, name, count, f"{coverage:.6f}"])
                    code += 1


def fetch_broden(destination: str | Path, resolution: int = 224, timeout: float = 10.0) -> Path:
    """Download and unpack the real Broden (broden1_224, _227 or _384; about 1 GB) into ``destination``.

    Needs a network; without one it fails within ``timeout`` seconds, and with INTERPVIZ_OFFLINE set it
    fails at once. A destination folder that this call created is removed again when the download fails.
    """
    if resolution not in (224, 227, 384):
        raise ValueError(f"Broden comes at resolutions 224, 227 and 384, not {resolution}")
    destination = Path(destination)
    url = BRODEN_URL.format(resolution=resolution)
    if settings.offline():
        raise ConnectionError(f"INTERPVIZ_OFFLINE is set, so {url} is not downloaded; unset it, or fetch it on a "
                              f"machine with internet and unpack it into {destination}")
    created = not destination.exists()
    destination.mkdir(parents=True, exist_ok=True)
    archive = destination / f"broden1_{resolution}.zip"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, archive.open("wb") as out:
            total = int(response.headers.get("Content-Length", 0)) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=archive.name) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except OSError as error:
        archive.unlink(missing_ok=True)
        if created:
            shutil.rmtree(destination, ignore_errors=True)
        raise ConnectionError(f"could not download {url} ({error}); fetch it on a machine with internet "
                              f"and unpack it into {destination}") from error
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(destination)
    archive.unlink()
    return destination / f"broden1_{resolution}"
