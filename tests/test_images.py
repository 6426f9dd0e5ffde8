import numpy as np
import pytest
import torch
from PIL import Image

from interpviz.images import as_rgb_array, to_pil, to_tensor
from interpviz.models.preprocessing import Preprocessing


def test_rgb_inputs_pass():
    array = np.zeros((5, 7, 3), np.uint8)
    assert as_rgb_array(array) is array
    assert as_rgb_array(Image.fromarray(array)).shape == (5, 7, 3)


@pytest.mark.parametrize(
    "image, message",
    [
        (Image.new("L", (4, 4)), "mode 'L'.*convert\\('RGB'\\)"),
        (Image.new("RGBA", (4, 4)), "mode 'RGBA'.*transparent"),
        (np.zeros((4, 4), np.uint8), "grey image of shape \\(4, 4\\)"),
        (np.zeros((4, 4, 4), np.uint8), "shape \\(4, 4, 4\\).*alpha"),
        (np.zeros((3, 4, 4), np.uint8), "shape \\(3, 4, 4\\).*\\(height, width, 3\\)"),
    ],
)
def test_wrong_images_say_what_is_allowed(image, message):
    with pytest.raises(ValueError, match=message):
        as_rgb_array(image)


def test_wrong_dtype_and_type_say_what_is_allowed():
    with pytest.raises(TypeError, match="dtype float64.*uint8"):
        as_rgb_array(np.zeros((4, 4, 3)))
    with pytest.raises(TypeError, match="got Tensor"):
        as_rgb_array(torch.zeros(3, 4, 4))


def test_preprocessing_checks_its_input(lite0):
    with pytest.raises(ValueError, match="mode 'RGBA'"):
        lite0.preprocess(Image.new("RGBA", (300, 300)))
    with pytest.raises(ValueError, match="empty list"):
        lite0.preprocess([])


def test_preprocessing_gives_a_normalised_square_batch(lite0):
    white = np.full((300, 500, 3), 255, np.uint8)
    batch = lite0.preprocess([white, white])
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == torch.float32
    expected = (1 - 0.498) / 0.502
    assert torch.allclose(batch, torch.full_like(batch, expected), atol=1e-5)
    assert torch.allclose(lite0.preprocess.denormalize(batch), torch.ones_like(batch), atol=1e-5)


def test_tensor_round_trip():
    array = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    batch = to_tensor(array)
    assert batch.shape == (1, 3, 6, 9)
    assert np.array_equal(np.asarray(to_pil(batch[0])), array)
    with pytest.raises(ValueError, match="one size"):
        to_tensor([array, array[:5]])


@pytest.mark.parametrize(
    "image", [np.zeros((0, 0, 3), np.uint8), np.zeros((4, 0, 3), np.uint8), Image.new("RGB", (0, 0))]
)
def test_empty_images_are_refused(image):
    with pytest.raises(ValueError, match="empty image of height \\d+ and width \\d+.*at least one pixel"):
        to_tensor(image)


def test_a_flipped_numpy_view_is_copied():
    array = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    flipped = array[:, ::-1]
    assert np.array_equal(as_rgb_array(flipped), flipped)
    preprocess = Preprocessing(input_size=8, resize_size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    assert torch.equal(preprocess(flipped), preprocess(np.ascontiguousarray(flipped)))
