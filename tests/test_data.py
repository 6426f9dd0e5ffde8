import numpy as np
import pytest
from PIL import Image

from interpviz import data


@pytest.mark.parametrize("name", data.photo_names())
def test_every_photo_loads_as_rgb(name):
    photo = data.load_photo(name)
    assert photo.mode == "RGB" and min(photo.size) >= 200


def test_every_photo_is_listed_in_the_data_readme():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "data" / "README.md").read_text()
    for name, photo in data.PHOTOS.items():
        assert f"`{name}`" in readme and photo.licence in readme


def test_unknown_photo_lists_the_names():
    with pytest.raises(ValueError, match="unknown photo 'dog'.*chelsea"):
        data.load_photo("dog")


def test_patch_set_is_reproducible_and_seeded():
    first = data.patch_set(size=32, per_photo_and_scale=2, photos=["chelsea", "coffee"], seed=3)
    again = data.patch_set(size=32, per_photo_and_scale=2, photos=["chelsea", "coffee"], seed=3)
    other = data.patch_set(size=32, per_photo_and_scale=2, photos=["chelsea", "coffee"], seed=4)
    assert first.images.shape == (2 * 2 * len(data.DEFAULT_SCALES), 32, 32, 3)
    assert np.array_equal(first.images, again.images) and first.captions == again.captions
    assert not np.array_equal(first.images, other.images)
    assert first.captions[0].startswith("chelsea x0.15 @(")


def test_patch_set_rejects_bad_arguments():
    with pytest.raises(ValueError, match="scales"):
        data.patch_set(scales=[1.5])
    with pytest.raises(ValueError, match="at least 8"):
        data.patch_set(size=4)


def test_image_set_to_tensor():
    patches = data.patch_set(size=16, per_photo_and_scale=1, photos=["rocket"])
    batch = patches.to_tensor([0, 2])
    assert batch.shape == (2, 3, 16, 16)
    assert np.allclose(batch[1].permute(1, 2, 0).numpy() * 255, patches.images[2], atol=1e-3)


def test_image_folder_reads_any_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (60, 40), "red").save(tmp_path / "b.png")
    Image.new("L", (30, 50), 128).save(tmp_path / "sub" / "a.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    images = data.image_folder(tmp_path, size=24)
    assert images.images.shape == (2, 24, 24, 3)
    assert images.captions == ["b.png", "sub/a.jpg"]
    assert tuple(images.images[0, 12, 12]) == (255, 0, 0)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.image_folder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no images"):
        data.image_folder(tmp_path)


def test_image_folder_scales_16_bit_grey(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).round().astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    images = data.image_folder(tmp_path, size=32)
    expected = np.repeat((ramp / 257).round()[..., None], 3, axis=-1)
    assert np.abs(images.images[0].astype(int) - expected).max() <= 2


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_image_folder_refuses_transparent_images_as_preprocess_does(tmp_path, mode):
    Image.new(mode, (8, 8)).save(tmp_path / "clear.png")
    with pytest.raises(ValueError, match="clear.png' has transparent pixels .*as model.preprocess does"):
        data.image_folder(tmp_path)


def test_image_folder_names_a_truncated_file(tmp_path):
    Image.new("RGB", (64, 64), "red").save(tmp_path / "whole.png")
    whole = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(OSError, match="could not read image file '.*cut.png' .*truncated"):
        data.image_folder(tmp_path)


def test_image_folder_limit(tmp_path):
    for name in "abc":
        Image.new("RGB", (8, 8)).save(tmp_path / f"{name}.png")
    assert data.image_folder(tmp_path, size=8, limit=2).captions == ["a.png", "b.png"]
    for limit in (0, -1):
        with pytest.raises(ValueError, match=f"limit must be a number of images of at least 1.*got {limit}"):
            data.image_folder(tmp_path, size=8, limit=limit)
