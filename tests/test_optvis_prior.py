import pytest
import torch

from interpviz import data
from interpviz.optvis import channel_objective
from interpviz.optvis.objectives import StepContext
from interpviz.optvis.prior import (
    DenoisingAutoencoder,
    LatentImage,
    denoiser_penalty,
    load_denoiser,
    save_denoiser,
    train_denoiser,
)
from interpviz.optvis.regularization import STANDARD_REGULARIZATION, Regularization, render_regularized
from interpviz.optvis.transforms import STANDARD_TRANSFORMS, Jitter, Pad, RandomRotate, RandomScale


@pytest.fixture(scope="module")
def shipped():
    return load_denoiser()


def test_shipped_denoiser_removes_noise_from_photo_patches(shipped):
    clean = data.patch_set(size=64, per_photo_and_scale=2, seed=123).to_tensor()
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        denoised = shipped(noisy)
    assert (denoised - clean).pow(2).mean() < 0.5 * (noisy - clean).pow(2).mean()
    assert not any(parameter.requires_grad for parameter in shipped.parameters())


def test_penalty_prefers_photos_to_static(shipped):
    photo = data.patch_set(size=64, per_photo_and_scale=1, photos=["coffee"]).to_tensor()[:2]
    static = torch.rand(photo.shape, generator=torch.Generator().manual_seed(0))
    penalty = denoiser_penalty(shipped)
    assert penalty(StepContext({}, photo)).min() > penalty(StepContext({}, static)).max()
    odd_size = torch.rand(1, 3, 30, 30)
    assert penalty(StepContext({}, odd_size)).shape == (1,)


def test_training_round_trip_and_wrong_checkpoints(tmp_path):
    patches = data.patch_set(size=16, per_photo_and_scale=1, photos=["chelsea"])
    model, report = train_denoiser(patches, steps=3, batch_size=2, progress=False)
    assert report.steps == 3 and report.validation_mse_noisy_input > 0
    path = tmp_path / "prior.pt"
    save_denoiser(model, path)
    loaded = load_denoiser(path)
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(loaded(x), model(x))
    torch.save({"state_dict": {}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a denoiser checkpoint"):
        load_denoiser(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="interpviz train-prior"):
        load_denoiser(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="divisible by 4"):
        DenoisingAutoencoder().encode(torch.rand(1, 3, 10, 12))


def test_latent_image_optimizes_only_the_code(shipped):
    image = LatentImage(shipped, batch=2, size=32)
    trainable = [p for p in image.parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0] is image.code
    assert image().shape == (2, 3, 32, 32)


def test_regularization_settings_build_transforms_and_penalties(shipped):
    assert Regularization().transforms() == () and Regularization().penalties() == []
    assert Regularization().label() == "no regularization"
    assert STANDARD_REGULARIZATION.transforms() == STANDARD_TRANSFORMS
    chosen = Regularization(jitter=8, rotate_degrees=10, scale_spread=0.1).transforms()
    assert [type(t) for t in chosen] == [Pad, Jitter, RandomScale, RandomRotate]
    assert chosen[2].factors[0] == pytest.approx(0.9) and chosen[2].factors[-1] == pytest.approx(1.1)
    assert max(chosen[3].angles) == 10
    assert len(Regularization(total_variation=3, l1=2, denoiser=1).penalties(shipped)) == 3
    with pytest.raises(ValueError, match="no denoiser"):
        Regularization(denoiser=1).penalties()


def test_render_regularized_reports_the_unit_alone(lite0, shipped):
    unit = channel_objective("blocks.2", 1)
    plain = render_regularized(lite0, unit, Regularization(), size=32, steps=4, progress=False)
    smooth = render_regularized(lite0, unit, Regularization(total_variation=1e4), size=32, steps=4, progress=False)
    latent = render_regularized(lite0, unit, Regularization(latent=True), shipped, size=32, steps=4, progress=False)
    from interpviz.optvis.render import evaluate

    for result in (plain, smooth, latent):
        assert torch.allclose(result.final_scores, evaluate(lite0, unit, result.images))
    roughness = lambda images: (images[..., 1:] - images[..., :-1]).abs().mean()
    assert roughness(smooth.images) < roughness(plain.images)
    with pytest.raises(ValueError, match="needs a denoiser"):
        render_regularized(lite0, unit, Regularization(latent=True), steps=1, progress=False)
