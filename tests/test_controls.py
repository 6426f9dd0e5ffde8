"""The positive control: a planted concept layer is found by dissection, and rotation destroys its detectors."""

import pytest
import torch

from interpviz.concepts import synthetic_dataset
from interpviz.controls import ConceptLayer, concept_layer_model, pixel_concepts, positive_control


@pytest.fixture(scope="module")
def dataset():
    return synthetic_dataset(count=120, progress=False)


def test_planted_channels_are_their_concepts_and_rotation_collapses_them(dataset):
    control = positive_control(dataset, concepts=8, noise_channels=24, progress=False)
    best = control.unrotated.best()
    assert [unit.label for unit in best[:8]] == control.concepts, "each planted channel detects its own concept"
    assert all(unit.iou > 0.04 for unit in best[:8]) and all(unit.iou < 0.04 for unit in best[8:])
    assert control.unrotated.unique_detectors() == 8
    assert control.rotated.unique_detectors() <= 0.3 * 8
    assert control.collapse >= 0.7


def test_the_concept_layer_reads_the_ground_truth_and_knows_its_images(dataset):
    numbers = pixel_concepts(dataset, 3, seed=1)
    layer = ConceptLayer(dataset, numbers, noise_channels=2, noise_level=0.0)
    model = concept_layer_model(layer)
    image = torch.from_numpy(dataset.load_image(5)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        planted = model(image)
    masks = dataset.load_masks(5)
    for channel, number in enumerate(numbers):
        area = sum(float((plane == number).sum()) for planes in masks.values() for plane in planes)
        assert float(planted[0, channel].sum()) * 4 * 4 == pytest.approx(area, rel=1e-4)
    assert float(planted[0, 3:].abs().max()) == 0
    with torch.no_grad():
        unknown = model(torch.rand(1, 3, *dataset.rows[0].image_size))
    assert float(unknown.abs().max()) == 0, "an image from elsewhere has no ground truth"
