import numpy as np
import pytest
import torch

from interpviz import tabular


@pytest.fixture(scope="module")
def trained():
    data = tabular.credit_default_data(count=2000, seed=0)
    model, scores = tabular.train_mlp(data, epochs=200, seed=0)
    return data, model, scores


def test_data_follows_its_documented_rule():
    data = tabular.credit_default_data(count=20000, seed=1)
    assert data.features.shape == (20000, len(tabular.FEATURES))
    assert np.array_equal(data.features, tabular.credit_default_data(count=20000, seed=1).features)
    logit = tabular.default_logit(data.features)
    predicted = 1 / (1 + np.exp(-logit))
    for low, high in [(0.0, 0.1), (0.3, 0.6)]:
        chosen = (predicted >= low) & (predicted < high)
        assert abs(data.default[chosen].mean() - predicted[chosen].mean()) < 0.03
    assert (data.features[:, 4] <= data.features[:, 2] - 18 + 1e-9).all(), "years at address fit the age"
    with pytest.raises(ValueError, match="at least 10"):
        tabular.credit_default_data(count=3)


def test_mlp_learns_nearly_as_well_as_the_rule(trained):
    _, _, scores = trained
    assert scores["auc"] > scores["rule_auc"] - 0.06 and scores["auc"] > 0.65


def test_the_output_follows_the_rule_not_the_noise(trained):
    data, model, _ = trained
    with torch.no_grad():
        output = model(data.standardized())[:, None]
    correlations = tabular.feature_correlations(output, data)[0]
    assert np.corrcoef(output[:, 0].numpy(), tabular.default_logit(data.features))[0, 1] > 0.6
    assert np.abs(correlations[5:]).max() < 0.5 * np.abs(correlations[:5]).max()


def test_preferred_input_beats_every_row_and_stays_in_range(trained):
    data, model, _ = trained
    activations = tabular.unit_activations(model, data, "layers.3")
    unit = int(activations.max(dim=0).values.argmax())
    preferred = tabular.preferred_input(model, data, "layers.3", unit, plausibility=0.0)
    assert preferred.activation >= preferred.best_row_activation - 1e-4
    values = np.array(list(preferred.profile.values()))
    assert (values >= data.features.min(axis=0) - 1e-6).all() and (values <= data.features.max(axis=0) + 1e-6).all()
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(IndexError, match="0 .. 7"):
        tabular.preferred_input(model, data, "layers.3", 8)
    with pytest.raises(ValueError, match="hidden layers are"):
        tabular.unit_activations(model, data, "layers.0")


def test_plausibility_pulls_towards_typical_values(trained):
    data, model, _ = trained
    free = tabular.preferred_input(model, data, "layers.1", 2, plausibility=0.0)
    pulled = tabular.preferred_input(model, data, "layers.1", 2, plausibility=1.0)
    distance = lambda p: np.abs((np.array(list(p.profile.values())) - data.mean) / data.std).sum()
    assert distance(pulled) < distance(free)
