import pytest
import torch

from interpviz.optvis import params, transforms


def test_colour_matrix_is_a_square_root_of_the_covariance():
    generator = torch.Generator().manual_seed(0)
    mixing = torch.tensor([[1.0, 0.2, 0.1], [0.3, 0.8, 0.0], [0.5, 0.1, 0.4]])
    pixels = mixing @ torch.randn(3, 20000, generator=generator)
    images = pixels.reshape(3, 2, 100, 100).permute(1, 0, 2, 3)
    root = params.color_correlation_sqrt(images)
    assert torch.allclose(root @ root.T, torch.cov(pixels), atol=1e-3)


def test_imagenet_matrix_is_normalised_like_lucid():
    matrix = params.normalized_color_matrix(params.IMAGENET_COLOR_CORRELATION_SQRT)
    assert matrix.norm(dim=0).max() == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["fourier", "pixel", "cppn"])
def test_parameterizations_give_valid_images(kind):
    image = params.make_image(kind, batch=2, size=24, generator=torch.Generator().manual_seed(0))
    images = image()
    assert images.shape == (2, 3, 24, 24)
    assert images.min() >= 0 and images.max() <= 1
    images.mean().backward()
    assert all(p.grad is not None for p in image.parameters())


def test_unknown_parameterization():
    with pytest.raises(ValueError, match="'fourier', 'pixel' or 'cppn'"):
        params.make_image("gan", 1, 8)


def test_pixel_image_can_start_from_a_photo():
    start = torch.rand(1, 3, 10, 10) * 0.9 + 0.05
    for decorrelate in (True, False):
        assert torch.allclose(params.PixelImage(start=start, decorrelate=decorrelate)(), start, atol=1e-4)


def test_fourier_scaling_damps_high_frequencies():
    image = params.FourierImage(size=32)
    assert image.scale[0, 1] > image.scale[16, 16] * 10


def test_transforms_change_size_as_documented():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 40, 40)
    assert transforms.Pad(5)(images, generator).shape[-1] == 50
    assert transforms.Pad(5)(images, generator)[0, 0, 0, 0] == 0.5
    assert transforms.Jitter(8)(images, generator).shape[-2:] == (32, 32)
    assert transforms.RandomScale((0.5,))(images, generator).shape[-2:] == (20, 20)
    assert transforms.scale_range(0.9, 1.1, 0.02) == tuple(round(0.9 + 0.02 * i, 6) for i in range(11))


def test_rotation_matches_rot90_and_keeps_gradients():
    images = torch.rand(1, 3, 16, 16, requires_grad=True)
    rotated = transforms.rotate(images, 90)
    assert torch.allclose(rotated, torch.rot90(images, k=1, dims=(2, 3)), atol=1e-5)
    assert torch.allclose(transforms.rotate(images, 0), images, atol=1e-6)
    corner = transforms.rotate(torch.zeros(1, 1, 16, 16), 45)[0, 0, 0, 0]
    assert corner == pytest.approx(0.5, abs=1e-6)
    rotated.sum().backward()
    assert images.grad is not None


def test_standard_transforms_are_seeded_and_differentiable():
    images = torch.rand(1, 3, 64, 64, requires_grad=True)
    apply = transforms.compose(transforms.STANDARD_TRANSFORMS)
    first = apply(images, torch.Generator().manual_seed(5))
    again = apply(images, torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    first.mean().backward()
    assert images.grad.abs().sum() > 0
