"""A procedural concept dataset in the Broden format, with pixel-exact ground truth, that works offline.

Every image is either a *texture image* (one procedural texture, named after a DTD class, fills it: a
scalar texture label) or a *scene image* (a two-band background whose colours make a scene-like scalar
label, with one to three solid-colour shapes on top: the object category). Every pixel also carries the
Broden colour name it was painted with (the colour category). Masks are written at half the image size,
sampled from the same label maps that painted the image, so they are exact. Deterministic by seed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from interpviz import settings
from interpviz.broden import BrodenDataset, encode_mask, write_tables

GENERATOR_VERSION = 1

COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "blue": (40, 70, 200),
    "brown": (120, 70, 30),
    "green": (40, 150, 50),
    "grey": (128, 128, 128),
    "orange": (240, 140, 20),
    "pink": (245, 160, 190),
    "purple": (130, 50, 160),
    "red": (210, 30, 30),
    "white": (240, 240, 240),
    "yellow": (240, 220, 40),
}

Pattern = Callable[[np.ndarray, np.ndarray, float, np.random.Generator], np.ndarray]


def _rotated(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    angle = rng.uniform(0, np.pi)
    return x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)


def _striped(x, y, period, rng):
    u, _ = _rotated(x, y, rng)
    return np.mod(u, period) < period / 2


def _dotted(x, y, period, rng):
    period = period / 2
    return (np.mod(x, period) - period / 2) ** 2 + (np.mod(y, period) - period / 2) ** 2 < (period / 6) ** 2


def _polka_dotted(x, y, period, rng):
    return (np.mod(x, period) - period / 2) ** 2 + (np.mod(y, period) - period / 2) ** 2 < (period / 3) ** 2


def _chequered(x, y, period, rng):
    return (np.floor(x / period) + np.floor(y / period)) % 2 == 0


def _grid(x, y, period, rng):
    return (np.mod(x, period) < period / 6) | (np.mod(y, period) < period / 6)


def _zigzagged(x, y, period, rng):
    u, v = _rotated(x, y, rng)
    zig = np.abs(np.mod(u, period) - period / 2)
    return np.mod(v + zig, period) < period / 2


def _wavy(x, y, period, rng):
    u, v = _rotated(x, y, rng)
    return np.mod(v + period / 3 * np.sin(2 * np.pi * u / (1.5 * period)), period) < period / 2


def _honeycombed(x, y, period, rng):
    size = period / 2
    q = (np.sqrt(3) / 3 * x - y / 3) / size
    r = (2 / 3 * y) / size
    cube = np.stack([q, -q - r, r])
    rounded = np.round(cube)
    distance = np.abs(cube - rounded).max(axis=0)
    return distance > 0.38


TEXTURES: dict[str, Pattern] = {
    "striped": _striped,
    "dotted": _dotted,
    "polka-dotted": _polka_dotted,
    "chequered": _chequered,
    "grid": _grid,
    "zigzagged": _zigzagged,
    "wavy": _wavy,
    "honeycombed": _honeycombed,
}


def _shape_mask(kind: str, x: np.ndarray, y: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    u, v = _rotated(x, y, rng) if kind not in ("circle", "ring") else (x, y)
    r = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    if kind == "circle":
        return r < radius
    if kind == "ring":
        return (r < radius) & (r > 0.6 * radius)
    if kind == "square":
        return (np.abs(u) < radius * 0.8) & (np.abs(v) < radius * 0.8)
    if kind == "diamond":
        return np.abs(u) + np.abs(v) < radius
    if kind == "cross":
        arm = radius * 0.3
        return ((np.abs(u) < arm) & (np.abs(v) < radius)) | ((np.abs(v) < arm) & (np.abs(u) < radius))
    if kind == "triangle":
        return (v > -radius / 2) & (v < radius - np.sqrt(3) * np.abs(u))
    if kind == "star":
        return r < radius * (0.55 + 0.45 * np.cos(5 * theta) ** 2)
    if kind == "crescent":
        return (r < radius) & ((u - radius * 0.45) ** 2 + v * v > (radius * 0.8) ** 2)
    raise ValueError(kind)


SHAPES = ("circle", "ring", "square", "diamond", "cross", "triangle", "star", "crescent")

SCENES: dict[str, tuple[str, str]] = {
    "field": ("blue", "green"),
    "beach": ("blue", "yellow"),
    "night": ("black", "grey"),
    "room": ("white", "brown"),
    "sunset": ("orange", "purple"),
}


@dataclass(frozen=True)
class ConceptLabels:
    """Label numbers of the synthetic set: 1.. colours, then shapes, textures and scenes."""

    names: list[tuple[str, str]]

    def number(self, name: str, category: str) -> int:
        return self.names.index((name, category)) + 1


def concept_labels() -> ConceptLabels:
    """All (name, category) pairs in label-number order."""
    names = [(c, "color") for c in COLOURS] + [(s, "object") for s in SHAPES]
    names += [(t, "texture") for t in TEXTURES] + [(s, "scene") for s in SCENES]
    return ConceptLabels(names)


def _paint(colour_labels: np.ndarray, palette: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image = palette[colour_labels].astype(np.float32)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def draw_example(size: int, rng: np.random.Generator, labels: ConceptLabels) -> tuple[np.ndarray, dict]:
    """One image and its label maps: {'color': (S, S) ints, 'object': (S, S) ints, 'texture'/'scene': [n]}."""
    colour_names = list(COLOURS)
    palette = np.zeros((len(labels.names) + 1, 3))
    for name, rgb in COLOURS.items():
        palette[labels.number(name, "color")] = rgb
    coordinates = np.arange(size, dtype=np.float32) - size / 2
    x, y = np.meshgrid(coordinates, coordinates)
    truth: dict = {}
    if rng.random() < 0.35:
        texture = list(TEXTURES)[rng.integers(len(TEXTURES))]
        first, second = rng.choice(len(colour_names), 2, replace=False)
        pattern = TEXTURES[texture](x + rng.uniform(0, size), y + rng.uniform(0, size), rng.uniform(18, 36), rng)
        colour = np.where(pattern, labels.number(colour_names[first], "color"), labels.number(colour_names[second], "color"))
        truth["texture"] = [labels.number(texture, "texture")]
        truth["color"] = colour
        truth["object"] = np.zeros_like(colour)
    else:
        scene = list(SCENES)[rng.integers(len(SCENES))]
        top, bottom = SCENES[scene]
        horizon = rng.uniform(-0.25, 0.25) * size
        colour = np.where(y < horizon, labels.number(top, "color"), labels.number(bottom, "color"))
        objects = np.zeros_like(colour)
        for _ in range(rng.integers(1, 4)):
            kind = SHAPES[rng.integers(len(SHAPES))]
            radius = rng.uniform(0.12, 0.28) * size
            centre = rng.uniform(-0.5 * size + radius, 0.5 * size - radius, 2)
            mask = _shape_mask(kind, x - centre[0], y - centre[1], radius, rng)
            fill = colour_names[rng.integers(len(colour_names))]
            colour = np.where(mask, labels.number(fill, "color"), colour)
            objects = np.where(mask, labels.number(kind, "object"), objects)
        truth["scene"] = [labels.number(scene, "scene")]
        truth["color"], truth["object"] = colour, objects
    return _paint(truth["color"], palette, rng), truth


def generate(root: str | Path, count: int = 2000, size: int = 224, seed: int = 0, progress: bool = True) -> Path:
    """Write a synthetic Broden-format dataset of ``count`` images into ``root`` (replacing what is there)."""
    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    (root / "images" / "synthetic").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    labels = concept_labels()
    half = size // 2
    rows, stats = [], {}
    categories = ["color", "object", "part", "material", "scene", "texture"]
    for index in tqdm(range(count), desc="generating concept images", disable=not progress):
        image, truth = draw_example(size, rng, labels)
        stem = f"synthetic/{index:05d}"
        Image.fromarray(image).save(root / "images" / f"{stem}.jpg", quality=95, subsampling=0)
        row = {"image": f"{stem}.jpg", "split": "train" if index % 5 else "val",
               "ih": size, "iw": size, "sh": half, "sw": half}
        for category in ("color", "object"):
            plane = truth[category][::2, ::2]
            present, counts = np.unique(plane, return_counts=True)
            if present.max() == 0:
                continue
            encode_mask(plane).save(root / "images" / f"{stem}_{category}.png")
            row[category] = f"{stem}_{category}.png"
            for number, pixels in zip(present, counts):
                if number:
                    frequency, coverage = stats.setdefault(int(number), {}).get(category, (0, 0.0))
                    stats[int(number)][category] = (frequency + 1, coverage + pixels / plane.size)
        for category in ("scene", "texture"):
            if category in truth:
                row[category] = ";".join(map(str, truth[category]))
                for number in truth[category]:
                    frequency, coverage = stats.setdefault(number, {}).get(category, (0, 0.0))
                    stats[number][category] = (frequency + 1, coverage + 1.0)
        rows.append(row)
    write_tables(root, categories, labels.names, rows, stats)
    (root / "complete").write_text(f"count={count} size={size} seed={seed}\n")
    return root


def synthetic_dataset(count: int = 2000, size: int = 224, seed: int = 0, progress: bool = True) -> BrodenDataset:
    """The synthetic concept dataset from the cache folder, generated there on first use (about a minute)."""
    root = settings.cache_dir() / f"broden_synthetic_v{GENERATOR_VERSION}_n{count}_s{size}_seed{seed}"
    if not (root / "complete").is_file():
        generate(root, count, size, seed, progress)
    return BrodenDataset(root)
