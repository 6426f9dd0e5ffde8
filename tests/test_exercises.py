"""interpviz.exercises: every check says "not yet" to a wrong answer, with the reason, and "right" to the solution."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from interpviz import exercises
from interpviz.broden import Label
from interpviz.dissect import DissectionSettings, LayerDissection
from interpviz.optvis import channel_objective, class_logit, class_probability


def test_feedback_is_true_only_when_right_and_says_so():
    right, wrong = exercises.Feedback(True, "because"), exercises.Feedback(False, "because not")
    assert bool(right) and not bool(wrong)
    assert str(right) == "right: because" and repr(wrong) == "not yet: because not"


@pytest.mark.parametrize("blank", [None, ...])
def test_a_blank_answer_is_not_yet_and_never_raises(blank):
    feedback = exercises.check_softmax([1.0, 2.0, 3.0], blank)
    assert not feedback and "no answer yet" in feedback.message


def test_check_shape(lite0):
    assert exercises.check_shape(lite0, "blocks.9.depthwise.act", (672, 14, 14))
    assert exercises.check_shape(lite0, "head", [1280, 7, 7])
    wrong_resolution = exercises.check_shape(lite0, "blocks.9.depthwise.act", (672, 28, 28))
    assert not wrong_resolution and "resolution" in wrong_resolution.message
    assert "channel" in exercises.check_shape(lite0, "head", (320, 7, 7)).message
    assert not exercises.check_shape(lite0, "head", (1280, 7))


def test_check_top_patch():
    maxima = SimpleNamespace(values=torch.tensor([[0.1, 5.0], [3.0, 1.0], [0.5, 2.0]]))
    assert exercises.check_top_patch(maxima, 0, 1)
    assert exercises.check_top_patch(maxima, 1, 0)
    least = exercises.check_top_patch(maxima, 0, 0)
    assert not least and "least" in least.message
    assert not exercises.check_top_patch(maxima, 1, 2)
    assert not exercises.check_top_patch(maxima, 1, 7)


def test_check_softmax():
    logits = [2.0, 1.0, 0.5]
    solution = np.exp(logits) / np.exp(logits).sum()
    assert exercises.check_softmax(logits, solution)
    assert exercises.check_softmax(logits, [round(p, 2) for p in solution])
    not_normalised = exercises.check_softmax(logits, np.exp(logits))
    assert not not_normalised and "add up" in not_normalised.message
    linear = exercises.check_softmax(logits, np.array(logits) / sum(logits))
    assert not linear and "exponentiates" in linear.message
    assert not exercises.check_softmax(logits, [0.5, 0.5])


def test_check_choice():
    options = ["the logit", "the probability", "same"]
    assert exercises.check_choice("Same ", "same", "softmax ignores a shift", options)
    assert not exercises.check_choice("the logit", "same", "softmax ignores a shift", options)
    unknown = exercises.check_choice("both", "same", "why", options)
    assert not unknown and "one of" in unknown.message


def test_check_weakest_legible():
    measured = {0.0: 0.30, 10.0: 0.21, 100.0: 0.12, 1000.0: 0.05}
    assert exercises.check_weakest_legible(measured, 0.15, 100.0)
    too_weak = exercises.check_weakest_legible(measured, 0.15, 10.0)
    assert not too_weak and "above the limit" in too_weak.message
    too_strong = exercises.check_weakest_legible(measured, 0.15, 1000.0)
    assert not too_strong and "weaker" in too_strong.message
    assert not exercises.check_weakest_legible(measured, 0.15, 50.0)
    assert not exercises.check_weakest_legible(measured, 0.01, 1000.0)


def test_check_negative_logit():
    assert exercises.check_negative_logit(-class_logit(967), 967)
    assert exercises.check_negative_logit(-1 * class_logit(967), 967)
    itself = exercises.check_negative_logit(class_logit(967), 967)
    assert not itself and "Negate" in itself.message
    probability = exercises.check_negative_logit(-class_probability(967), 967)
    assert not probability and "probability" in probability.message
    assert not exercises.check_negative_logit(-class_logit(281), 967)
    assert not exercises.check_negative_logit(channel_objective("blocks.9", 3), 967)
    assert not exercises.check_negative_logit("espresso", 967)


def test_check_mixed_direction():
    vector = torch.zeros(8)
    vector[[2, 5]] = 1 / math.sqrt(2)
    assert exercises.check_mixed_direction(vector, 8, 2, 5)
    unnormalised = exercises.check_mixed_direction(vector * math.sqrt(2), 8, 2, 5)
    assert not unnormalised and "length" in unnormalised.message
    assert not exercises.check_mixed_direction(torch.ones(8) / math.sqrt(8), 8, 2, 5)
    assert not exercises.check_mixed_direction(vector, 9, 2, 5)
    assert not exercises.check_mixed_direction(-vector, 8, 2, 5)


def test_check_best_cell_ranks_by_absolute_correlation():
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(500, generator=generator)
    values = torch.randn(500, 4, generator=generator)
    values[:, 1] = 0.5 * target + 0.5 * values[:, 1]
    values[:, 3] = -target + 0.1 * values[:, 3]
    assert exercises.check_best_cell(values, target.numpy(), 3)
    positive_only = exercises.check_best_cell(values, target.numpy(), 1)
    assert not positive_only and "|r|" in positive_only.message
    assert not exercises.check_best_cell(values, target.numpy(), 0)
    assert not exercises.check_best_cell(values, target.numpy(), 4)


def test_check_iou_names_the_usual_mistakes():
    mask = np.zeros((4, 4), bool)
    concept = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # 4 px
    concept[:2, :] = True  # 8 px; intersection 4, union 8
    assert exercises.check_iou(mask, concept, 0.5)
    assert "intersection in pixels" in exercises.check_iou(mask, concept, 4).message
    assert "once" in exercises.check_iou(mask, concept, 4 / 12).message
    assert "precision" in exercises.check_iou(mask, concept, 1.0).message
    assert not exercises.check_iou(mask, concept, 0.9)


def _dissection(ious: list[float], direction: str = "positive", layer: str = "conv5") -> LayerDissection:
    labels = [Label(0, "-", "", 0, 0.0), Label(1, "red", "color", 10, 0.1), Label(2, "star", "object", 10, 0.1)]
    units = len(ious)
    iou = torch.zeros(units, 3)
    for unit, value in enumerate(ious):
        iou[unit, 1 + unit % 2] = value
    zeros = torch.zeros(units)
    return LayerDissection(layer, DissectionSettings(direction=direction), labels, ["color", "object"], zeros, zeros,
                           iou, torch.zeros(units, 3), torch.zeros(units, 3), torch.zeros(units, 3),
                           torch.zeros(units, 1, dtype=torch.long), torch.zeros(units, 1))


def test_check_new_detectors_counts_unit_by_unit():
    before = _dissection([0.10, 0.01, 0.10, 0.01])  # units 0 and 2 are detectors
    after = _dissection([0.01, 0.10, 0.10, 0.10])   # unit 0 lost, units 1 and 3 became detectors
    assert exercises.check_new_detectors(before, after, 2)
    difference = exercises.check_new_detectors(before, after, 1)
    assert not difference and "unit by unit" in difference.message
    every = exercises.check_new_detectors(before, after, 3)
    assert not every and "already" in every.message


def test_check_dissection_direction():
    negative = _dissection([0.1], direction="negative")
    assert exercises.check_dissection_direction({"conv5": negative}, "conv5")
    positive = exercises.check_dissection_direction(_dissection([0.1]), "conv5")
    assert not positive and "direction='negative'" in positive.message
    assert not exercises.check_dissection_direction(negative, "conv4")
    assert not exercises.check_dissection_direction({"conv5": negative}, "conv4")


def test_check_folded_weight():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 5, generator=generator)
    rotation, _ = torch.linalg.qr(torch.randn(5, 5, generator=generator))
    features = torch.randn(5, generator=generator)
    assert torch.allclose((weight @ rotation.T) @ (rotation @ features), weight @ features, atol=1e-5)
    assert exercises.check_folded_weight(weight, rotation, weight @ rotation.T)
    twice = exercises.check_folded_weight(weight, rotation, weight @ rotation)
    assert not twice and "transpose" in twice.message
    assert not exercises.check_folded_weight(weight, rotation, weight)
    assert not exercises.check_folded_weight(weight, rotation, weight.T)


def test_check_prediction():
    assert exercises.check_prediction("fewer", 20, 4)
    assert exercises.check_prediction("same", 20, 19)
    assert exercises.check_prediction("More", 20, 30)
    wrong = exercises.check_prediction("fewer", 20, 20)
    assert not wrong and "same" in wrong.message
    assert not exercises.check_prediction("lots", 20, 4)


def test_check_channel_count(lite0):
    layers = ["stem.act", "head"]
    assert exercises.check_channel_count(lite0, layers, 32 + 1280)
    assert "number of layers" in exercises.check_channel_count(lite0, layers, 2).message
    assert "one layer" in exercises.check_channel_count(lite0, layers, 1280).message
    assert not exercises.check_channel_count(lite0, layers, 5000)
