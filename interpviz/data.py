"""Images that work offline: the colour photos bundled with scikit-image and scikit-learn, and patch sets.

A patch set is a reproducible set of random square crops of those photos at several scales. It stands in
for a large dataset when searching for dataset examples offline; ``image_folder`` reads any folder of
images (an ImageNet folder, say) into the same form.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from interpviz.images import as_rgb_array


@dataclass(frozen=True)
class Photo:
    """A bundled colour photo: where it comes from and under what licence (also listed in data/README.md)."""

    load_array: Callable[[], np.ndarray]
    description: str
    source: str
    licence: str


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load_array() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load_array


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load_array() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load_array


PHOTOS: dict[str, Photo] = {
    "astronaut": Photo(_skimage("astronaut"), "astronaut Eileen Collins", "scikit-image (NASA)", "public domain"),
    "chelsea": Photo(_skimage("chelsea"), "Chelsea the cat", "scikit-image (Stefan van der Walt)", "CC0"),
    "coffee": Photo(_skimage("coffee"), "a cup of espresso", "scikit-image (Rachel Michetti)", "CC0"),
    "rocket": Photo(_skimage("rocket"), "Falcon 9 launch of DSCOVR", "scikit-image (SpaceX)", "public domain"),
    "hubble_deep_field": Photo(
        _skimage("hubble_deep_field"), "Hubble eXtreme Deep Field", "scikit-image (NASA)", "public domain"
    ),
    "immunohistochemistry": Photo(
        _skimage("immunohistochemistry"), "stained colonic glands", "scikit-image (CMMI)", "no known restrictions"
    ),
    "retina": Photo(_skimage("retina"), "fundus photograph of a retina", "scikit-image (M. Haggstrom)", "CC0"),
    "china": Photo(_sklearn("china.jpg"), "a temple in China", "scikit-learn (danielbuechele, Flickr)", "CC BY 2.0"),
    "flower": Photo(_sklearn("flower.jpg"), "a flower", "scikit-learn (vultilion, Flickr)", "CC BY 2.0"),
}


def photo_names() -> list[str]:
    """Names that ``load_photo`` accepts."""
    return list(PHOTOS)


def load_photo(name: str) -> Image.Image:
    """A bundled colour photo as a PIL RGB image."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; available photos: {', '.join(photo_names())}")
    return Image.fromarray(PHOTOS[name].load_array())


@dataclass(frozen=True)
class ImageSet:
    """Same-sized images as a uint8 (N, H, W, 3) array, with one caption per image saying where it came from."""

    images: np.ndarray
    captions: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def to_tensor(self, indices: Sequence[int] | None = None) -> torch.Tensor:
        """Float (N, 3, H, W) tensor in [0, 1] of all images, or of those at ``indices``."""
        chosen = self.images if indices is None else self.images[list(indices)]
        return torch.from_numpy(np.ascontiguousarray(chosen)).permute(0, 3, 1, 2).float().div(255)


DEFAULT_SCALES = (0.15, 0.25, 0.4, 0.6)


def patch_set(
    size: int = 128,
    per_photo_and_scale: int = 12,
    scales: Sequence[float] = DEFAULT_SCALES,
    photos: Sequence[str] | None = None,
    seed: int = 0,
) -> ImageSet:
    """Random square crops of the bundled photos, side = scale x the photo's short side, resized to ``size``.

    The same arguments always give the same patches (a NumPy generator seeded with ``seed``).
    """
    if size < 8:
        raise ValueError(f"patch size must be at least 8 pixels, got {size}")
    if not scales or not all(0 < scale <= 1 for scale in scales):
        raise ValueError(f"scales must be fractions of the photo's short side in (0, 1], got {list(scales)}")
    rng = np.random.default_rng(seed)
    patches, captions = [], []
    for name in photos if photos is not None else photo_names():
        photo = load_photo(name)
        width, height = photo.size
        for scale in scales:
            side = max(8, round(scale * min(width, height)))
            for _ in range(per_photo_and_scale):
                left = int(rng.integers(0, width - side + 1))
                top = int(rng.integers(0, height - side + 1))
                crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
                patches.append(np.asarray(crop))
                captions.append(f"{name} x{scale:g} @({left},{top})")
    return ImageSet(images=np.stack(patches), captions=captions)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def _read_image_file(path: Path) -> Image.Image:
    """An image file as a PIL RGB image: grey is repeated, 16-bit grey is scaled to 8 bits, alpha is refused."""
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened.copy()
    except OSError as error:
        raise OSError(f"could not read image file {str(path)!r} ({error}); replace or remove it") from error
    if "A" in image.mode or "transparency" in image.info:
        raise ValueError(
            f"image file {str(path)!r} has transparent pixels (mode {image.mode!r}); interpviz reads RGB images, "
            "as model.preprocess does. Decide what transparent pixels should become and save the file as RGB"
        )
    if image.mode in SIXTEEN_BIT_MODES:
        eight_bit = (np.asarray(image, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8)
        image = Image.fromarray(eight_bit)
    return image.convert("RGB")


def image_folder(folder: str | Path, size: int = 128, limit: int | None = None) -> ImageSet:
    """Every image under ``folder`` (recursively, sorted by path), centre-cropped square and resized to ``size``.

    ``limit`` reads only the first ``limit`` images (None: all of them).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a number of images of at least 1, or None for all of them; got {limit}")
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
    paths = sorted(path for path in root.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {str(root)!r}")
    paths = paths[:limit]
    images = []
    for path in tqdm(paths, desc="reading images", leave=False):
        image = _read_image_file(path)
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        images.append(as_rgb_array(image))
    return ImageSet(images=np.stack(images), captions=[str(path.relative_to(root)) for path in paths])
