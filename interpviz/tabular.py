"""Interpretable units of a small MLP on tabular data whose generating rule is known.

The data is a synthetic credit-default table. Every row draws its features independently and then
defaults with probability sigmoid(z), where

    z = -2.0 + 0.6 * max(previous_credits - 2, 0) + 0.5 * mobile_contracts - 0.04 * (age - 40)
        - 0.8 * log(income / 3000) - 0.08 * years_at_address

and the three noise features play no part. A hidden unit is studied two ways: the rows of the data that
activate it most, and its preferred input found by activation maximization in standardized feature space,
kept inside the range the data covers and pulled towards typical values by a penalty.

The MLP trains on ``settings.default_device()`` unless told otherwise; the functions that take it run it on its
own device and return activations on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from interpviz import settings
from interpviz.hooks import forward_to
from interpviz.optvis.render import frozen_model
from interpviz.text import auc_per_cell, correlation_per_cell

FEATURES = ("previous_credits", "mobile_contracts", "age", "income", "years_at_address", "noise_1", "noise_2", "noise_3")
RULE_WEIGHTS_TEXT = ("+0.6 per previous credit above 2, +0.5 per mobile contract, -0.04 per year of age, "
                     "-0.8 per e-fold of income, -0.08 per year at the address; noise features: none")


def default_logit(features: np.ndarray) -> np.ndarray:
    """The generating rule's log-odds of default for raw feature rows (columns in FEATURES order)."""
    credits, mobile, age, income, years = (features[:, i] for i in range(5))
    return (-2.0 + 0.6 * np.maximum(credits - 2, 0) + 0.5 * mobile - 0.04 * (age - 40)
            - 0.8 * np.log(income / 3000) - 0.08 * years)


@dataclass
class CreditData:
    """Raw features (N, 8), default labels (N,), and the standardization used by the model."""

    features: np.ndarray
    default: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def standardized(self) -> torch.Tensor:
        """Features as a float tensor with zero mean and unit variance per column."""
        return torch.from_numpy((self.features - self.mean) / self.std).float()

    def to_raw(self, standardized: torch.Tensor) -> np.ndarray:
        """Back from standardized to raw units."""
        return standardized.detach().cpu().numpy() * self.std + self.mean

    @property
    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-feature minimum and maximum seen in the data, in standardized units."""
        scaled = self.standardized()
        return scaled.min(dim=0).values, scaled.max(dim=0).values


def credit_default_data(count: int = 5000, seed: int = 0) -> CreditData:
    """Draw the synthetic credit table (see the module docstring for the rule)."""
    if count < 10:
        raise ValueError(f"need at least 10 rows, got {count}")
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 75, count)
    features = np.column_stack([
        np.minimum(rng.poisson(2.0, count), 10),
        np.minimum(rng.poisson(1.2, count), 6),
        age,
        np.exp(rng.normal(np.log(3000), 0.45, count)),
        np.minimum(rng.exponential(6.0, count), age - 18),
        rng.normal(size=(count, 3)),
    ]).astype(np.float64)
    probability = 1 / (1 + np.exp(-default_logit(features)))
    default = (rng.random(count) < probability).astype(np.float32)
    return CreditData(features, default, features.mean(axis=0), features.std(axis=0))


class CreditMLP(nn.Module):
    """8 standardized inputs, two ReLU layers (``layers.1`` and ``layers.3``), one default logit."""

    def __init__(self, hidden: tuple[int, int] = (16, 8)):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(len(FEATURES), hidden[0]), nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]), nn.ReLU(),
            nn.Linear(hidden[1], 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)


def train_mlp(data: CreditData, epochs: int = 400, seed: int = 0,
              device: torch.device | str | None = None) -> tuple[CreditMLP, dict[str, float]]:
    """Full-batch Adam on 80% of the rows, on ``device`` (default: ``settings.default_device()``); returns the
    model and its held-out accuracy and AUC."""
    device = settings.resolve_device(device)
    torch.manual_seed(seed)
    model = CreditMLP().to(device)
    inputs, labels = data.standardized().to(device), torch.from_numpy(data.default)
    split = int(0.8 * len(labels))
    train_labels = labels[:split].to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-4)
    for _ in range(epochs):
        loss = F.binary_cross_entropy_with_logits(model(inputs[:split]), train_labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        scores = model(inputs[split:]).cpu()
    held_out = labels[split:]
    accuracy = float(((scores > 0).float() == held_out).float().mean())
    rule_scores = torch.from_numpy(default_logit(data.features[split:]))
    return model, {"accuracy": accuracy, "auc": _auc(scores, held_out), "rule_auc": _auc(rule_scores, held_out),
                   "default_rate": float(labels.mean())}


def _auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return float(auc_per_cell(scores[:, None], labels.numpy())[0])


HIDDEN_LAYERS = ("layers.1", "layers.3")


def unit_activations(model: CreditMLP, data: CreditData, layer: str) -> torch.Tensor:
    """Activations (N, units) of a hidden layer (``layers.1`` or ``layers.3``) for every row, on the CPU."""
    if layer not in HIDDEN_LAYERS:
        raise ValueError(f"unknown layer {layer!r}; hidden layers are {', '.join(HIDDEN_LAYERS)}")
    with torch.no_grad():
        return forward_to(model, data.standardized().to(settings.model_device(model)), layer, detach=True)[layer].cpu()


@dataclass
class PreferredInput:
    """A unit's preferred feature profile (raw units), the activation it reaches, and the data's best row."""

    profile: dict[str, float]
    activation: float
    best_row_activation: float


def preferred_input(model: CreditMLP, data: CreditData, layer: str, unit: int, plausibility: float = 0.1,
                    steps: int = 300, lr: float = 0.05) -> PreferredInput:
    """Maximize one unit over standardized inputs inside the data's range, minus plausibility * |x|^2.

    The search starts from the row that activates the unit most (a ReLU unit that is 0 at the start would
    get no gradient), and runs on the model's device.
    """
    device = settings.model_device(model)
    activations = unit_activations(model, data, layer)
    if not 0 <= unit < activations.shape[1]:
        raise IndexError(f"unit {unit} is out of range for {layer}: use 0 .. {activations.shape[1] - 1}")
    low, high = (bound.to(device) for bound in data.bounds)
    start = data.standardized()[int(activations[:, unit].argmax())].to(device)
    x = start.clone()[None].requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    with frozen_model(model):
        for _ in range(steps):
            value = forward_to(model, x, layer)[layer][0, unit]
            loss = -(value - plausibility * x.pow(2).sum())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                x.copy_(torch.maximum(torch.minimum(x, high), low))
    with torch.no_grad():
        reached = float(forward_to(model, x, layer)[layer][0, unit])
    raw = data.to_raw(x)[0]
    return PreferredInput(dict(zip(FEATURES, raw.tolist())), reached, float(activations[:, unit].max()))


def feature_correlations(activations: torch.Tensor, data: CreditData) -> np.ndarray:
    """Pearson correlation of every unit (columns of ``activations``) with every raw feature: (units, 8)."""
    columns = [correlation_per_cell(activations, data.features[:, i]).numpy() for i in range(len(FEATURES))]
    return np.stack(columns, axis=1).astype(np.float64)
