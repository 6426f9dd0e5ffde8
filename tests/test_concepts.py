"""The synthetic concept set v2: exact and deterministic, every concept reachable, scenes made of layouts."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from interpviz import concepts
from interpviz.broden import BrodenDataset

QUANTILE = 0.005


@pytest.fixture(scope="module")
def default_set():
    """The default set (2,000 images at 224 px), from the cache folder like the notebooks use it."""
    return concepts.synthetic_dataset(progress=False)


@pytest.fixture(scope="module")
def measured(default_set):
    """Counted from the mask files and index.csv: pixels and images per label, pixels of each category's images."""
    pixels, images = {}, {}
    category_pixels = dict.fromkeys(default_set.categories, 0)
    for index, row in enumerate(default_set.rows):
        area = row.segmentation_size[0] * row.segmentation_size[1]
        counted = {}
        for category, planes in default_set.load_masks(index).items():
            category_pixels[category] += area
            for plane in planes:
                numbers, counts = np.unique(plane[plane > 0], return_counts=True)
                for number, count in zip(numbers.tolist(), counts.tolist()):
                    counted[number] = counted.get(number, 0) + count
        for category, numbers in row.scalars.items():
            category_pixels[category] += area
            for number in numbers:
                counted[number] = counted.get(number, 0) + area
        for number, count in counted.items():
            pixels[number] = pixels.get(number, 0) + count
            images[number] = images.get(number, 0) + 1
    all_pixels = sum(row.segmentation_size[0] * row.segmentation_size[1] for row in default_set.rows)
    return pixels, images, category_pixels, all_pixels


def test_every_concept_of_the_default_set_is_reachable(default_set, measured):
    pixels, images, category_pixels, all_pixels = measured
    labels = default_set.labels[1:]
    assert len(labels) >= 120
    mask = QUANTILE * all_pixels
    for label in labels:
        area = pixels.get(label.number, 0)
        assert area > 0, f"{label.name} never appears"
        ceiling = min(mask, area) / max(mask, area)
        share = area / category_pixels[label.category]
        assert ceiling >= 0.2, f"{label.category} {label.name}: ceiling {ceiling:.3f}"
        assert 0.001 <= share <= 0.025, f"{label.category} {label.name}: {share:.4%} of its category's images"
    written = {row.number: row for row in concepts.read_ceilings(default_set)}
    assert sorted(written) == [label.number for label in labels]
    for number, row in written.items():
        assert (row.pixels, row.images) == (pixels[number], images[number]), row.name
        assert row.ceiling == pytest.approx(min(mask, row.pixels) / max(mask, row.pixels), abs=1e-4)


def test_all_six_categories_have_concepts_and_the_table_sums_them(default_set, measured):
    pixels, _, _, _ = measured
    found = {label.category for label in default_set.labels[1:] if pixels.get(label.number)}
    assert found == {"color", "object", "part", "material", "scene", "texture"}
    table = concepts.ceiling_table(default_set)
    assert [row["category"] for row in table] == concepts.CATEGORIES
    assert sum(row["concepts"] for row in table) == len(default_set.labels) - 1
    assert min(row["lowest ceiling"] for row in table) >= 0.2


def test_textures_are_whole_images_and_patches(default_set):
    whole = sum("texture" in row.scalars for row in default_set.rows)
    patches = sum("texture" in row.masks for row in default_set.rows)
    assert 0.05 * len(default_set) < whole < 0.15 * len(default_set)
    assert patches > 0.3 * len(default_set)


def test_scenes_are_many_and_each_on_few_images(default_set):
    scenes = [row.scalars["scene"][0] for row in default_set.rows if "scene" in row.scalars]
    numbers, counts = np.unique(scenes, return_counts=True)
    assert len(numbers) >= 40
    assert counts.max() <= 0.025 * len(default_set)


def test_scene_is_not_told_by_the_mean_colour(default_set):
    rows = [index for index, row in enumerate(default_set.rows) if "scene" in row.scalars]
    features = np.array([default_set.load_image(index).reshape(-1, 3).mean(axis=0) for index in rows])
    scenes = np.array([default_set.rows[index].scalars["scene"][0] for index in rows])
    train = np.array([default_set.rows[index].split == "train" for index in rows])
    scaler = StandardScaler().fit(features[train])
    classifier = LogisticRegression(max_iter=2000).fit(scaler.transform(features[train]), scenes[train])
    accuracy = (classifier.predict(scaler.transform(features[~train])) == scenes[~train]).mean()
    _, counts = np.unique(scenes[~train], return_counts=True)
    chance = counts.max() / counts.sum()
    assert accuracy <= chance + 0.10


def test_a_scene_holds_exactly_its_two_kinds_of_objects():
    labels = concepts.concept_labels()
    rng = np.random.default_rng(0)
    for name, (_, first, second) in list(concepts.SCENES.items())[::5]:
        _, truth = concepts.draw_example(224, rng, labels, name)
        kinds = {labels.names[number - 1][0] for number in np.unique(truth["object"]) if number}
        assert kinds == {first, second}, name
        assert truth["scene"] == [labels.number(name, "scene")]


def test_synthetic_set_is_deterministic_and_exact(tmp_path):
    first = BrodenDataset(concepts.generate(tmp_path / "one", count=30, size=64, seed=3, progress=False))
    again = BrodenDataset(concepts.generate(tmp_path / "two", count=30, size=64, seed=3, progress=False))
    assert np.array_equal(first.load_image(7), again.load_image(7))
    assert [label.name for label in first.labels[1:]] == [name for name, _ in concepts.concept_labels().names]
    parts_of = {}
    for kind, drawing in concepts.OBJECTS.items():
        for part, _ in drawing.draw(np.zeros((1, 1)), np.zeros((1, 1))):
            parts_of.setdefault(part, set()).add(kind)
    for index in range(len(first)):
        row = first.rows[index]
        assert row.segmentation_size == (32, 32)
        assert ("scene" in row.scalars) != ("texture" in row.scalars)
        if "texture" in row.scalars:
            assert row.masks == {}, "a texture image carries no pixel labels"
            continue
        planes = {category: planes[0] for category, planes in first.load_masks(index).items()}
        blank = np.zeros((32, 32), np.int32)
        colour, objects, parts, material, texture = (planes.get(c, blank) for c in concepts.PIXEL_CATEGORIES)
        assert not ((parts > 0) & (objects == 0)).any() and not ((material > 0) & (objects == 0)).any()
        assert not ((colour > 0) & (objects == 0) & (texture == 0)).any(), "the background has no colour label"
        for number in np.unique(parts[parts > 0]):
            kinds = {first.labels[n].name for n in np.unique(objects[parts == number])}
            assert kinds <= parts_of[first.labels[number].name]
        image = first.load_image(index)[::2, ::2].astype(int)
        for number in np.unique(colour[(colour > 0) & (material == 0)]):
            rgb = np.array(concepts.COLOURS[first.labels[number].name])
            assert np.abs(np.median(image[(colour == number) & (material == 0)], axis=0) - rgb).max() < 20


def test_a_cached_set_of_another_version_is_not_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPVIZ_CACHE", str(tmp_path))
    old = tmp_path / "broden_synthetic_v1_n12_s32_seed0"
    old.mkdir()
    (old / "complete").write_text("count=12 size=32 seed=0\n")
    dataset = concepts.synthetic_dataset(count=12, size=32, progress=False)
    assert dataset.root.name == f"broden_synthetic_v{concepts.GENERATOR_VERSION}_n12_s32_seed0"
    assert concepts.GENERATOR_VERSION >= 2 and len(dataset) == 12
    assert concepts.read_ceilings(dataset)[0].name == "black"
