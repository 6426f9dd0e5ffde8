"""A learned image prior: a small denoising autoencoder trained on photo patches.

A denoising autoencoder learns to map a noisy image back to a clean one, so its reconstruction error is
small on images that look like its training photos and large on high-frequency noise. It serves feature
visualization in two ways: as a regularizer (``denoiser_penalty``: minus the distance between the image
and its reconstruction) and as a parameterization (``LatentImage``: optimize the code, decode to pixels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from interpviz import settings
from interpviz.checkpoints import load_checkpoint
from interpviz.data import ImageSet
from interpviz.optvis.objectives import Objective, StepContext

SHIPPED_DENOISER = Path(__file__).resolve().parents[2] / "data" / "denoiser.pt"
SHIPPED_DENOISER_FIX = ("It ships with interpviz: restore it with 'git checkout -- data/denoiser.pt' in the interpviz "
                        "folder, or train a new one with 'interpviz train-prior -o data/denoiser.pt' (a few CPU minutes).")


@dataclass(frozen=True)
class DenoiserConfig:
    """Widths of the autoencoder: ``hidden`` channels in the middle, ``latent`` channels at 1/4 resolution."""

    hidden: int = 48
    latent: int = 12


class DenoisingAutoencoder(nn.Module):
    """Convolutional encoder (two stride-2 steps) and decoder; images in [0, 1], sides divisible by 4."""

    def __init__(self, config: DenoiserConfig = DenoiserConfig()):
        super().__init__()
        self.config = config
        hidden, latent = config.hidden, config.latent
        self.encoder = nn.Sequential(
            nn.Conv2d(3, hidden, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, latent, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent, hidden, 3, padding=1), nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(hidden, 3, 3, padding=1), nn.Sigmoid(),
        )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Latent code (B, latent, H/4, W/4) of images in [0, 1]."""
        if images.shape[-1] % 4 or images.shape[-2] % 4:
            raise ValueError(f"image sides must be divisible by 4, got {tuple(images.shape[-2:])}")
        return self.encoder(images)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from a latent code."""
        return self.decoder(code)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))


@dataclass
class TrainingReport:
    """What a training run did: steps, seconds, and the denoising loss on held-out patches."""

    steps: int
    seconds: float
    noise_sd: float
    validation_mse_noisy_input: float
    validation_mse_reconstruction: float


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if torch.rand(1, generator=generator) < 0.5:
        batch = batch.flip(-1)
    return batch


def train_denoiser(patches: ImageSet, steps: int = 3000, batch_size: int = 32, noise_sd: float = 0.1,
                   lr: float = 2e-3, seed: int = 0, progress: bool = True,
                   config: DenoiserConfig = DenoiserConfig(),
                   device: torch.device | str | None = None) -> tuple[DenoisingAutoencoder, TrainingReport]:
    """Train a denoising autoencoder on ``patches`` (every 10th patch is held out for validation).

    It trains on ``device`` (default: ``settings.default_device()``); noise and batches are drawn on the CPU
    from ``seed``, so a seed gives the same training data on every device. The model is returned on the CPU.
    """
    device = settings.resolve_device(device)
    images = patches.to_tensor()
    held_out = torch.arange(len(images)) % 10 == 0
    train, validation = images[~held_out], images[held_out]
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DenoisingAutoencoder(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    started = time.time()
    for _ in tqdm(range(steps), desc="training denoiser", disable=not progress):
        indices = torch.randint(len(train), (batch_size,), generator=generator)
        clean = _augment(train[indices], generator)
        noisy = clean + noise_sd * torch.randn(clean.shape, generator=generator)
        loss = F.mse_loss(model(noisy.to(device)), clean.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval().cpu()
    with torch.no_grad():
        noisy = validation + noise_sd * torch.randn(validation.shape, generator=generator)
        report = TrainingReport(
            steps=steps,
            seconds=time.time() - started,
            noise_sd=noise_sd,
            validation_mse_noisy_input=float(F.mse_loss(noisy, validation)),
            validation_mse_reconstruction=float(F.mse_loss(model(noisy), validation)),
        )
    return model, report


def save_denoiser(model: DenoisingAutoencoder, path: str | Path) -> None:
    """Save as a plain state dict plus the config, loadable with ``torch.load(weights_only=True)``."""
    torch.save({"config": vars(model.config), "state_dict": model.state_dict()}, path)


def load_denoiser(path: str | Path | None = None, device: torch.device | str | None = None) -> DenoisingAutoencoder:
    """Load a denoiser checkpoint (default: the one shipped in ``data/denoiser.pt``), frozen, in eval mode.

    ``device`` defaults to ``settings.default_device()``, where the zoo models go too.
    """
    path = Path(path) if path is not None else SHIPPED_DENOISER
    if not path.is_file():
        raise FileNotFoundError(
            f"denoiser checkpoint {str(path)!r} not found; train one with "
            "'interpviz train-prior -o data/denoiser.pt' (a few CPU minutes)"
        )
    how_to_fix = f"Train a new one with 'interpviz train-prior -o {path}' (a few CPU minutes)."
    checkpoint = load_checkpoint(path, SHIPPED_DENOISER_FIX if path.resolve() == SHIPPED_DENOISER else how_to_fix)
    try:
        model = DenoisingAutoencoder(DenoiserConfig(**checkpoint["config"]))
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError) as error:
        raise ValueError(f"{str(path)!r} is not a denoiser checkpoint of this version: {error}") from error
    model.requires_grad_(False)
    return model.eval().to(settings.resolve_device(device))


def denoiser_penalty(denoiser: DenoisingAutoencoder) -> Objective:
    """Minus the mean squared distance between the image and the denoiser's reconstruction of it."""

    def score(context: StepContext) -> torch.Tensor:
        images = context.images
        padded_height, padded_width = -images.shape[-2] % 4, -images.shape[-1] % 4
        padded = F.pad(images, [0, padded_width, 0, padded_height], mode="replicate")
        reconstruction = denoiser(padded)[..., : images.shape[-2], : images.shape[-1]]
        return -(images - reconstruction).pow(2).flatten(1).mean(dim=1)

    return Objective(score, frozenset(), "denoiser prior penalty")


class LatentImage(nn.Module):
    """Parameterization through a frozen denoiser's decoder: only the latent code is optimized."""

    def __init__(self, denoiser: DenoisingAutoencoder, batch: int = 1, size: int = 128, sd: float = 0.1,
                 generator: torch.Generator | None = None):
        super().__init__()
        if size % 4:
            raise ValueError(f"size must be divisible by 4, got {size}")
        self.decoder = denoiser.decoder
        latent = denoiser.config.latent
        self.code = nn.Parameter(torch.randn(batch, latent, size // 4, size // 4, generator=generator) * sd)

    def forward(self) -> torch.Tensor:
        return self.decoder(self.code)
