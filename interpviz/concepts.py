"""A procedural concept dataset in the Broden format, with pixel-exact ground truth, that works offline.

Version 2. All six Broden categories, every concept small enough that a unit's mask (q = 0.5% of all
positions) could match it with an IoU of at least 0.2:

- **scene** (image level): 54 scenes, each a layout of objects: one of 6 arrangements (row, column, grid,
  pyramid, vee, plus) filled with one of 9 pairs of object kinds, e.g. ``house-tree-row``. The background
  is a random muted colour with a gradient, drawn independently of the scene, so no colour tells a scene.
- **object** (per pixel): 18 kinds (house, tree, car, star, ring, ...), upright or at any angle.
- **part** (per pixel): 24 sub-regions of objects (a house's roof, wall, door and window; a star's tips;
  a ring's hole; a cross's arms; a car's wheels and windows; ...). Part names can be shared (window).
- **material** (per pixel): 8 surface patterns (brick, wood, ...) that darken parts of an object's fill.
- **texture**: 12 patterns named after DTD classes, image level on *texture images* (one texture fills
  the image) and per pixel on texture patches in the background of some scene images.
- **color** (per pixel): the 11 Broden colour names, labelled where an object or a texture patch is
  painted; the background carries no colour label (it would make every colour too large to match).

10% of the images are texture images, the rest scene images, half of them with a texture patch; ``generate``
deals scenes and textures out evenly, so each scene is on about 1.7% of the images. Masks are written at half
the image size, sampled from the label maps that painted the image, so they are exact. Deterministic by seed.

Beside the Broden tables, ``ceilings.csv`` holds per concept its image count, its pixel count C, its share
of all pixels and of the pixels of the images where its category is annotated, and its IoU ceiling
min(A, C) / max(A, C) for a unit mask of A = q * all pixels (q = 0.005): the best IoU any unit can reach.
``read_ceilings`` reads it; ``ceiling_table`` summarises it per category.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from interpviz import settings
from interpviz.broden import BrodenDataset, encode_mask, write_tables

GENERATOR_VERSION = 2
CATEGORIES = ["color", "object", "part", "material", "scene", "texture"]
PIXEL_CATEGORIES = ["color", "object", "part", "material", "texture"]
TEXTURE_IMAGE_SHARE = 0.1
TEXTURE_PATCH_CHANCE = 0.5
MATERIAL_CHANCE = 0.5
MATERIAL_SHADE = 0.78
QUANTILE = 0.005

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


def _rotated(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    return x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)


def _striped(x, y, period, rng):
    u, _ = _rotated(x, y, rng.uniform(0, np.pi))
    return np.mod(u, period) < period / 2


def _lined(x, y, period, rng):
    u, _ = _rotated(x, y, rng.uniform(0, np.pi))
    return np.mod(u, period / 2) < period / 10


def _dotted(x, y, period, rng):
    period = period / 2
    return (np.mod(x, period) - period / 2) ** 2 + (np.mod(y, period) - period / 2) ** 2 < (period / 6) ** 2


def _polka_dotted(x, y, period, rng):
    return (np.mod(x, period) - period / 2) ** 2 + (np.mod(y, period) - period / 2) ** 2 < (period / 3) ** 2


def _chequered(x, y, period, rng):
    return (np.floor(x / period) + np.floor(y / period)) % 2 == 0


def _grid(x, y, period, rng):
    return (np.mod(x, period) < period / 6) | (np.mod(y, period) < period / 6)


def _crosshatched(x, y, period, rng):
    u, v = _rotated(x, y, np.pi / 4)
    return (np.mod(u, period / 2) < period / 10) | (np.mod(v, period / 2) < period / 10)


def _zigzagged(x, y, period, rng):
    u, v = _rotated(x, y, rng.uniform(0, np.pi))
    zig = np.abs(np.mod(u, period) - period / 2)
    return np.mod(v + zig, period) < period / 2


def _wavy(x, y, period, rng):
    u, v = _rotated(x, y, rng.uniform(0, np.pi))
    return np.mod(v + period / 3 * np.sin(2 * np.pi * u / (1.5 * period)), period) < period / 2


def _spiralled(x, y, period, rng):
    cx, cy = x - x.mean(), y - y.mean()
    radius, angle = np.hypot(cx, cy), np.arctan2(cy, cx)
    return np.mod(radius + period * angle / (2 * np.pi), period) < period / 2


def _scaly(x, y, period, rng):
    row = np.floor(y / (period / 2))
    shifted = x + (row % 2) * period / 2
    cx = np.mod(shifted, period) - period / 2
    cy = np.mod(y, period / 2)
    return cx**2 + cy**2 < (period / 2) ** 2 * 0.8


def _honeycombed(x, y, period, rng):
    size = period / 2
    q = (np.sqrt(3) / 3 * x - y / 3) / size
    r = (2 / 3 * y) / size
    cube = np.stack([q, -q - r, r])
    distance = np.abs(cube - np.round(cube)).max(axis=0)
    return distance > 0.38


TEXTURES: dict[str, Pattern] = {
    "striped": _striped,
    "lined": _lined,
    "dotted": _dotted,
    "polka-dotted": _polka_dotted,
    "chequered": _chequered,
    "grid": _grid,
    "crosshatched": _crosshatched,
    "zigzagged": _zigzagged,
    "wavy": _wavy,
    "spiralled": _spiralled,
    "scaly": _scaly,
    "honeycombed": _honeycombed,
}


def _brick(u, v, period, rng):
    row = np.floor(v / period)
    along = u + (row % 2) * period
    return (np.mod(v, period) < period / 5) | (np.mod(along, 2 * period) < period / 5)


def _wood(u, v, period, rng):
    return np.sin(2 * np.pi * v / period + 2.5 * np.sin(u / period)) > 0.6


def _metal(u, v, period, rng):
    return np.mod(u + v, period / 2) < period / 6


def _fabric(u, v, period, rng):
    return (np.floor(u / (period / 3)) + np.floor(v / (period / 3))) % 2 == 0


def _stone(u, v, period, rng):
    phases = rng.uniform(0, 2 * np.pi, 3)
    directions = (0.3, 1.4, 2.5)
    field = sum(np.sin((u * np.cos(d) + v * np.sin(d)) * 2 * np.pi / period + p) for d, p in zip(directions, phases))
    return field > 0.8


def _tile(u, v, period, rng):
    return (np.mod(u, 1.5 * period) < period / 5) | (np.mod(v, 1.5 * period) < period / 5)


def _marble(u, v, period, rng):
    return np.abs(np.sin(2 * np.pi * (u + 0.8 * np.sin(v / period) * period) / (2 * period))) < 0.15


def _glass(u, v, period, rng):
    return np.mod(u - v, 3 * period) < period / 2


MATERIALS: dict[str, Pattern] = {
    "brick": _brick,
    "wood": _wood,
    "metal": _metal,
    "fabric": _fabric,
    "stone": _stone,
    "tile": _tile,
    "marble": _marble,
    "glass": _glass,
}

Regions = list[tuple[str, np.ndarray]]
HOLE_PARTS = {"ring-hole"}

# The object drawings. (u, v) are pixel coordinates in units of the object's radius around its centre, v
# pointing down; each drawing returns its regions: (part name, or "" for an unnamed body, and a mask).


def _house(u, v):
    roof = (v > -0.85) & (v <= -0.05) & (np.abs(u) < 0.85 * (v + 0.85) / 0.8)
    door = (np.abs(u - 0.27) < 0.27) & (v > 0.1) & (v < 0.85)
    window = (np.abs(u + 0.33) < 0.22) & (v > 0.05) & (v < 0.45)
    wall = (np.abs(u) < 0.65) & (v > -0.05) & (v < 0.85) & ~door & ~window
    return [("roof", roof), ("wall", wall), ("door", door), ("window", window)]


def _tree(u, v):
    crown = u**2 + (v + 0.35) ** 2 < 0.6**2
    trunk = (np.abs(u) < 0.3) & (v < 0.95) & ~crown & (v > 0)
    return [("crown", crown), ("trunk", trunk)]


def _car(u, v):
    wheels = ((np.abs(u) - 0.5) ** 2 + (v - 0.45) ** 2) < 0.27**2
    window = (v > -0.55) & (v <= -0.1) & (np.abs(u) < 0.25 + 0.6 * (v + 0.55))
    body = (np.abs(u) < 0.92) & (v > -0.1) & (v < 0.45) & ~wheels
    return [("car-body", body), ("wheel", wheels), ("window", window)]


def _flower(u, v):
    centre = u**2 + v**2 < 0.45**2
    petals = np.zeros_like(centre)
    for angle in np.arange(6) * np.pi / 3:
        petals |= (u - 0.64 * np.cos(angle)) ** 2 + (v - 0.64 * np.sin(angle)) ** 2 < 0.32**2
    return [("petal", petals & ~centre), ("flower-centre", centre)]


def _boat(u, v):
    hull = (v > 0.3) & (v < 0.8) & (np.abs(u) < 0.95 - (v - 0.3))
    sail = (v > -0.9) & (v <= 0.3) & (u > -0.15) & (u < -0.15 + 0.8 * (v + 0.9) / 1.2)
    return [("hull", hull), ("sail", sail)]


def _umbrella(u, v):
    canopy = (v < 0.05) & (u**2 + (v - 0.05) ** 2 < 0.85**2)
    handle = (np.abs(u) < 0.24) & (v >= 0.05) & (v < 0.95)
    return [("canopy", canopy), ("handle", handle)]


def _mushroom(u, v):
    cap = (v < 0.1) & ((u / 0.92) ** 2 + ((v - 0.1) / 0.8) ** 2 < 1)
    stem = (np.abs(u) < 0.3) & (v >= 0.1) & (v < 0.85)
    return [("cap", cap), ("stem", stem)]


def _arrow(u, v):
    shaft = (u > -0.9) & (u <= 0.1) & (np.abs(v) < 0.3)
    head = (u > 0.1) & (u < 0.9) & (np.abs(v) < 0.65 * (0.9 - u) / 0.8)
    return [("arrowhead", head), ("shaft", shaft)]


def _star(u, v):
    radius, angle = np.hypot(u, v), np.arctan2(v, u)
    centre = radius < 0.45
    star = radius < 0.4 + 0.6 * np.abs(np.cos(2.5 * angle)) ** 3
    return [("star-tip", star & ~centre), ("star-centre", centre)]


def _ring(u, v):
    radius = np.hypot(u, v)
    return [("ring-band", (radius < 0.95) & (radius >= 0.55)), ("ring-hole", radius < 0.55)]


def _cross(u, v):
    centre = (np.abs(u) < 0.35) & (np.abs(v) < 0.35)
    arms = ((np.abs(u) < 0.35) & (np.abs(v) < 0.95)) | ((np.abs(v) < 0.35) & (np.abs(u) < 0.95))
    return [("cross-arm", arms & ~centre), ("cross-centre", centre)]


def _heart(u, v):
    up = -v
    return [("", (u**2 + (up * 1.2 - np.sqrt(np.abs(u)) * 0.7) ** 2) < 0.75)]


def _circle(u, v):
    return [("", u**2 + v**2 < 0.85**2)]


def _square(u, v):
    return [("", (np.abs(u) < 0.7) & (np.abs(v) < 0.7))]


def _triangle(u, v):
    return [("", (v < 0.5) & (v > 0.95 * (-1 + np.sqrt(3) * np.abs(u))))]


def _diamond(u, v):
    return [("", np.abs(u) / 0.75 + np.abs(v) < 0.95)]


def _crescent(u, v):
    return [("", (u**2 + v**2 < 0.9**2) & ((u - 0.45) ** 2 + v**2 > 0.7**2))]


def _hexagon(u, v):
    a, b = np.abs(u), np.abs(v)
    return [("", (b < 0.78) & (np.sqrt(3) * a + b < 0.9 * np.sqrt(3)))]


@dataclass(frozen=True)
class ObjectKind:
    """How to draw an object: its regions (part name or "" for the unnamed body) in the unit disc."""

    draw: Callable[[np.ndarray, np.ndarray], Regions]
    upright: bool


OBJECTS: dict[str, ObjectKind] = {
    "house": ObjectKind(_house, True),
    "tree": ObjectKind(_tree, True),
    "car": ObjectKind(_car, True),
    "flower": ObjectKind(_flower, False),
    "boat": ObjectKind(_boat, True),
    "umbrella": ObjectKind(_umbrella, True),
    "mushroom": ObjectKind(_mushroom, True),
    "arrow": ObjectKind(_arrow, False),
    "star": ObjectKind(_star, False),
    "ring": ObjectKind(_ring, False),
    "cross": ObjectKind(_cross, False),
    "heart": ObjectKind(_heart, True),
    "circle": ObjectKind(_circle, False),
    "square": ObjectKind(_square, False),
    "triangle": ObjectKind(_triangle, False),
    "diamond": ObjectKind(_diamond, False),
    "crescent": ObjectKind(_crescent, False),
    "hexagon": ObjectKind(_hexagon, False),
}

PAIRS: list[tuple[str, str]] = [
    ("house", "tree"), ("car", "flower"), ("boat", "umbrella"), ("mushroom", "arrow"), ("star", "ring"),
    ("cross", "heart"), ("circle", "square"), ("triangle", "diamond"), ("crescent", "hexagon"),
]

# Slots (x, y, which kind of the pair) in units of the image size around its centre, and the object
# radius as a share of the image size. Every arrangement looks the same mirrored left to right.
ARRANGEMENTS: dict[str, tuple[list[tuple[float, float, int]], float]] = {
    "row": ([(-0.29, 0.0, 0), (0.0, 0.0, 1), (0.29, 0.0, 0)], 0.14),
    "column": ([(0.0, -0.29, 1), (0.0, 0.0, 0), (0.0, 0.29, 1)], 0.14),
    "grid": ([(-0.2, -0.2, 0), (0.2, -0.2, 1), (-0.2, 0.2, 1), (0.2, 0.2, 0)], 0.16),
    "pyramid": ([(0.0, -0.22, 0), (-0.23, 0.2, 1), (0.23, 0.2, 1)], 0.16),
    "vee": ([(-0.23, -0.2, 0), (0.23, -0.2, 0), (0.0, 0.22, 1)], 0.16),
    "plus": ([(0.0, 0.0, 1), (-0.29, 0.0, 0), (0.29, 0.0, 0), (0.0, -0.29, 1), (0.0, 0.29, 1)], 0.12),
}

SCENES: dict[str, tuple[str, str, str]] = {
    f"{first}-{second}-{arrangement}": (arrangement, first, second)
    for first, second in PAIRS for arrangement in ARRANGEMENTS
}


def part_names() -> list[str]:
    """Every part name, in the order the object kinds first draw them."""
    names: list[str] = []
    probe = np.zeros((1, 1))
    for kind in OBJECTS.values():
        for part, _ in kind.draw(probe, probe):
            if part and part not in names:
                names.append(part)
    return names


@dataclass(frozen=True)
class ConceptLabels:
    """Label numbers of the synthetic set: 1.. colours, objects, parts, materials, textures, scenes."""

    names: list[tuple[str, str]]

    def number(self, name: str, category: str) -> int:
        return self.names.index((name, category)) + 1


def concept_labels() -> ConceptLabels:
    """All (name, category) pairs in label-number order."""
    names = [(c, "color") for c in COLOURS] + [(o, "object") for o in OBJECTS] + [(p, "part") for p in part_names()]
    names += [(m, "material") for m in MATERIALS] + [(t, "texture") for t in TEXTURES] + [(s, "scene") for s in SCENES]
    return ConceptLabels(names)


@dataclass
class _Canvas:
    """The image being painted (float RGB) and one label map per pixel category, all at full size."""

    rgb: np.ndarray
    maps: dict[str, np.ndarray]


def _pick_colours(count: int, background: np.ndarray, rng: np.random.Generator) -> list[str]:
    """``count`` different colour names, each far enough from the background to be seen."""
    visible = [name for name, rgb in COLOURS.items() if np.linalg.norm(np.array(rgb) - background) > 90]
    return [visible[i] for i in rng.choice(len(visible), count, replace=False)]


def _draw_texture_patch(canvas: _Canvas, size: int, background: np.ndarray, rng: np.random.Generator,
                        labels: ConceptLabels) -> None:
    width, height = (rng.uniform(0.22, 0.36, 2) * size).astype(int) + 1
    left, top = rng.integers(0, size - width + 1), rng.integers(0, size - height + 1)
    name = list(TEXTURES)[rng.integers(len(TEXTURES))]
    ys, xs = np.mgrid[top:top + height, left:left + width].astype(np.float32)
    pattern = TEXTURES[name](xs, ys, rng.uniform(0.08, 0.16) * size, rng)
    first, second = _pick_colours(2, background, rng)
    colour = np.where(pattern, labels.number(first, "color"), labels.number(second, "color"))
    box = (slice(top, top + height), slice(left, left + width))
    canvas.rgb[box] = np.where(pattern[..., None], COLOURS[first], COLOURS[second])
    canvas.maps["color"][box] = colour
    canvas.maps["texture"][box] = labels.number(name, "texture")


def _draw_object(canvas: _Canvas, kind: str, centre: np.ndarray, radius: float, background: np.ndarray,
                 rng: np.random.Generator, labels: ConceptLabels) -> None:
    size = canvas.rgb.shape[0]
    low = np.clip(np.floor(centre - radius).astype(int), 0, size - 1)
    high = np.clip(np.ceil(centre + radius).astype(int) + 1, low + 1, size)
    ys, xs = np.mgrid[low[1]:high[1], low[0]:high[0]].astype(np.float32)
    angle = rng.uniform(-0.2, 0.2) if OBJECTS[kind].upright else rng.uniform(0, 2 * np.pi)
    u, v = _rotated((xs - centre[0]) / radius, (ys - centre[1]) / radius, angle)
    regions = OBJECTS[kind].draw(u, v)
    painted = [(part, mask) for part, mask in regions if part not in HOLE_PARTS]
    colours = _pick_colours(len(painted), background, rng)
    material = list(MATERIALS)[rng.integers(len(MATERIALS))] if rng.random() < MATERIAL_CHANCE else None
    shade = MATERIALS[material](u, v, rng.uniform(0.28, 0.38), rng) if material else np.zeros_like(u, bool)
    box = (slice(low[1], high[1]), slice(low[0], high[0]))
    rgb, maps = canvas.rgb[box], {category: plane[box] for category, plane in canvas.maps.items()}
    for part, mask in regions:
        maps["object"][mask] = labels.number(kind, "object")
        maps["part"][mask] = labels.number(part, "part") if part else 0
    for (part, mask), colour in zip(painted, colours):
        rgb[mask] = np.array(COLOURS[colour]) * np.where(shade[mask], MATERIAL_SHADE, 1.0)[:, None]
        maps["color"][mask] = labels.number(colour, "color")
        maps["texture"][mask] = 0
        maps["material"][mask] = labels.number(material, "material") if material else 0


def _background(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A muted random colour (near grey, so it is no named colour) with a gentle gradient; and its mean."""
    mean = rng.uniform(50, 205) + rng.uniform(-30, 30, 3)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    gradient = np.cos(direction) * ramp[None, :] + np.sin(direction) * ramp[:, None]
    return (mean.astype(np.float32) + rng.uniform(5, 20) * gradient[..., None]).astype(np.float32), mean


def draw_example(size: int, rng: np.random.Generator, labels: ConceptLabels,
                 choice: str | None = None) -> tuple[np.ndarray, dict]:
    """One image and its label maps: (S, S) int arrays for each pixel category, and the image-level labels
    ('scene': [n], or 'texture': [n] on a texture image, whose pixels then carry no label).

    ``choice`` names the scene or texture to draw; by default a texture image with chance 0.1, else a
    scene, uniformly.
    """
    if choice is None:
        pool = TEXTURES if rng.random() < TEXTURE_IMAGE_SHARE else SCENES
        choice = list(pool)[rng.integers(len(pool))]
    coordinates = np.arange(size, dtype=np.float32)
    if choice in TEXTURES:
        x, y = np.meshgrid(coordinates + rng.uniform(0, size), coordinates + rng.uniform(0, size))
        pattern = TEXTURES[choice](x, y, rng.uniform(0.08, 0.16) * size, rng)
        first, second = rng.choice(len(COLOURS), 2, replace=False)
        rgb = np.where(pattern[..., None], list(COLOURS.values())[first], list(COLOURS.values())[second])
        return _finish(rgb, rng), {"texture": [labels.number(choice, "texture")]}
    arrangement, first, second = SCENES[choice]
    slots, radius_share = ARRANGEMENTS[arrangement]
    rgb, background = _background(size, rng)
    canvas = _Canvas(rgb, {category: np.zeros((size, size), np.int32) for category in PIXEL_CATEGORIES})
    if rng.random() < TEXTURE_PATCH_CHANCE:
        _draw_texture_patch(canvas, size, background, rng, labels)
    offset = rng.uniform(-0.04, 0.04, 2)
    for x, y, which in slots:
        centre = (np.array([x, y]) + offset + rng.uniform(-0.02, 0.02, 2) + 0.5) * size
        radius = radius_share * rng.uniform(0.85, 1.0) * size
        _draw_object(canvas, (first, second)[which], centre, radius, background, rng, labels)
    truth: dict = dict(canvas.maps)
    truth["scene"] = [labels.number(choice, "scene")]
    return _finish(canvas.rgb, rng), truth


def _finish(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = rgb.astype(np.float32) + 6 * rng.standard_normal(rgb.shape, dtype=np.float32)
    return np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)


def _dealt_choices(count: int, rng: np.random.Generator) -> list[str]:
    """Scenes and textures for ``count`` images, dealt out evenly (10% textures) in a seeded order."""
    textures = round(count * TEXTURE_IMAGE_SHARE)
    choices = [list(TEXTURES)[i % len(TEXTURES)] for i in range(textures)]
    choices += [list(SCENES)[i % len(SCENES)] for i in range(count - textures)]
    return [choices[i] for i in rng.permutation(count)]


@dataclass(frozen=True)
class ConceptCeiling:
    """A concept's total labelled area and the best IoU any unit mask of A = q of all positions can reach."""

    number: int
    name: str
    category: str
    images: int
    pixels: int
    share_of_all: float
    share_of_category_images: float
    ceiling: float


CEILING_COLUMNS = ["number", "name", "category", "images", "pixels", "share_of_all", "share_of_category_images",
                   "ceiling"]


def iou_ceiling(pixels: int, all_pixels: int, quantile: float = QUANTILE) -> float:
    """min(A, C) / max(A, C) for a concept of C pixels and a mask of A = quantile * all pixels."""
    mask = quantile * all_pixels
    return min(mask, pixels) / max(mask, pixels) if pixels else 0.0


def concept_ceilings(labels: list[tuple[str, str]], images: dict[int, int], pixels: dict[int, int],
                     category_pixels: dict[str, int], all_pixels: int) -> list[ConceptCeiling]:
    """One ``ConceptCeiling`` per label from its image count, pixel count and its category's image pixels."""
    rows = []
    for number, (name, category) in enumerate(labels, start=1):
        count = pixels.get(number, 0)
        rows.append(ConceptCeiling(number, name, category, images.get(number, 0), count, count / all_pixels,
                                   count / max(category_pixels.get(category, 0), 1), iou_ceiling(count, all_pixels)))
    return rows


def write_ceilings(root: Path, rows: list[ConceptCeiling]) -> None:
    """Write ``ceilings.csv`` beside ``label.csv``."""
    with (root / "ceilings.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CEILING_COLUMNS)
        for row in rows:
            writer.writerow([row.number, row.name, row.category, row.images, row.pixels, f"{row.share_of_all:.6f}",
                             f"{row.share_of_category_images:.6f}", f"{row.ceiling:.4f}"])


def read_ceilings(dataset: BrodenDataset | str | Path) -> list[ConceptCeiling]:
    """The ceiling table of a generated set (``ceilings.csv``): one row per concept, in label order."""
    root = dataset.root if isinstance(dataset, BrodenDataset) else Path(dataset)
    with (root / "ceilings.csv").open(newline="") as handle:
        return [ConceptCeiling(int(row["number"]), row["name"], row["category"], int(row["images"]), int(row["pixels"]),
                               float(row["share_of_all"]), float(row["share_of_category_images"]), float(row["ceiling"]))
                for row in csv.DictReader(handle)]


def ceiling_table(dataset: BrodenDataset | str | Path) -> list[dict[str, object]]:
    """Per category: how many concepts, and the smallest, median and largest IoU ceiling and pixel share."""
    rows = read_ceilings(dataset)
    table = []
    for category in CATEGORIES:
        members = [row for row in rows if row.category == category]
        if not members:
            continue
        ceilings = [row.ceiling for row in members]
        shares = [row.share_of_all for row in members]
        table.append({"category": category, "concepts": len(members), "lowest ceiling": round(min(ceilings), 3),
                      "median ceiling": round(float(np.median(ceilings)), 3), "highest ceiling": round(max(ceilings), 3),
                      "smallest share %": round(100 * min(shares), 3), "largest share %": round(100 * max(shares), 3)})
    return table


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
    images: dict[int, int] = {}
    pixels: dict[int, int] = {}
    category_pixels = dict.fromkeys(CATEGORIES, 0)
    choices = _dealt_choices(count, rng)
    for index, choice in enumerate(tqdm(choices, desc="generating concept images", disable=not progress)):
        image, truth = draw_example(size, rng, labels, choice)
        stem = f"synthetic/{index:05d}"
        Image.fromarray(image).save(root / "images" / f"{stem}.jpg", quality=95, subsampling=0)
        row = {"image": f"{stem}.jpg", "split": "train" if index % 5 else "val",
               "ih": size, "iw": size, "sh": half, "sw": half}
        for category, value in truth.items():
            if isinstance(value, list):
                row[category] = ";".join(map(str, value))
                present, counts = np.array(value), np.full(len(value), half * half)
            else:
                plane = value[::2, ::2]
                present, counts = np.unique(plane[plane > 0], return_counts=True)
                if not len(present):
                    continue
                encode_mask(plane).save(root / "images" / f"{stem}_{category}.png")
                row[category] = f"{stem}_{category}.png"
            category_pixels[category] += half * half
            for number, area in zip(present.tolist(), counts.tolist()):
                frequency, coverage = stats.setdefault(number, {}).get(category, (0, 0.0))
                stats[number][category] = (frequency + 1, coverage + area / (half * half))
                images[number] = images.get(number, 0) + 1
                pixels[number] = pixels.get(number, 0) + area
        rows.append(row)
    write_tables(root, CATEGORIES, labels.names, rows, stats)
    write_ceilings(root, concept_ceilings(labels.names, images, pixels, category_pixels, count * half * half))
    (root / "complete").write_text(f"count={count} size={size} seed={seed}\n")
    return root


def synthetic_dataset(count: int = 2000, size: int = 224, seed: int = 0, progress: bool = True) -> BrodenDataset:
    """The synthetic concept dataset from the cache folder, generated there on first use (about half a minute)."""
    root = settings.cache_dir() / f"broden_synthetic_v{GENERATOR_VERSION}_n{count}_s{size}_seed{seed}"
    if not (root / "complete").is_file():
        generate(root, count, size, seed, progress)
    return BrodenDataset(root)
