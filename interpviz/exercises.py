"""Feedback for the exercises of the course: each ``check_...`` says "right" or "not yet", and why.

A check never raises on a wrong answer: it returns a ``Feedback`` that a notebook displays, so an exercise
cell runs as it stands, with its blank still in place. ``bool(feedback)`` is True only for a right answer,
which lets a solution cell ``assert`` it and the tests run every solution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from interpviz.optvis.objectives import Objective, StepContext

__all__ = [
    "Feedback",
    "check_shape",
    "check_top_patch",
    "check_softmax",
    "check_choice",
    "check_weakest_legible",
    "check_negative_logit",
    "check_mixed_direction",
    "check_best_cell",
    "check_iou",
    "check_dissection_direction",
    "check_new_detectors",
    "check_folded_weight",
    "check_prediction",
    "check_channel_count",
]


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer: ``right`` and a sentence that says why."""

    right: bool
    message: str

    def __bool__(self) -> bool:
        return self.right

    def __str__(self) -> str:
        return ("right: " if self.right else "not yet: ") + self.message

    __repr__ = __str__


def _right(message: str) -> Feedback:
    return Feedback(True, message)


def _not_yet(message: str) -> Feedback:
    return Feedback(False, message)


def _missing(answer) -> Feedback | None:
    if answer is None or answer is Ellipsis:
        return _not_yet("no answer yet: replace the blank (None or ...) with yours.")
    return None


def _as_float_array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


# chapter 01 ---------------------------------------------------------------------------------------------------


def check_shape(model, layer: str, answer: Sequence[int] | None) -> Feedback:
    """Chapter 01: the (channels, height, width) of ``layer`` for the model's 224 px input."""
    if (missing := _missing(answer)) is not None:
        return missing
    expected = tuple(model.layer(layer).output_shape)
    try:
        answer = tuple(int(value) for value in answer)
    except (TypeError, ValueError):
        return _not_yet(f"give three whole numbers (channels, height, width), got {answer!r}.")
    if len(answer) != 3:
        return _not_yet(f"give three numbers (channels, height, width), got {len(answer)}.")
    if answer == expected:
        return _right(f"{layer} outputs {expected[0]} channels of {expected[1]}x{expected[2]}.")
    wrong = []
    if answer[0] != expected[0]:
        wrong.append("the channel count (model.layer(name).channels says it)")
    if answer[1:] != expected[1:]:
        wrong.append("the resolution (224 px is halved once per stride-2 layer before it)")
    return _not_yet(f"{answer} is off in " + " and ".join(wrong) + ".")


def check_top_patch(maxima, channel: int, answer: int | None) -> Feedback:
    """Chapter 01: the index of the patch whose maximum over positions is largest for ``channel``."""
    if (missing := _missing(answer)) is not None:
        return missing
    column = maxima.values[:, channel]
    best = int(column.argmax())
    answer = int(answer)
    if not 0 <= answer < len(column):
        return _not_yet(f"patch {answer} does not exist: there are {len(column)} patches.")
    if float(column[answer]) >= float(column[best]) - 1e-5 * abs(float(column[best])):
        return _right(f"patch {answer} reaches {float(column[best]):.2f}, the largest maximum of channel {channel}.")
    if answer == int(column.argmin()):
        return _not_yet(f"patch {answer} excites channel {channel} least: take the largest maximum, not the smallest.")
    return _not_yet(f"patch {answer} reaches {float(column[answer]):.2f}, but another patch reaches "
                    f"{float(column[best]):.2f}: reduce each map with its maximum over positions, then take the argmax.")


# chapter 02 ---------------------------------------------------------------------------------------------------


def check_softmax(logits: Sequence[float], answer: Sequence[float] | None, tolerance: float = 0.01) -> Feedback:
    """Chapter 02: the class probabilities of ``logits``, worked out by hand (to ``tolerance``)."""
    if (missing := _missing(answer)) is not None:
        return missing
    logits = _as_float_array(logits)
    answer = _as_float_array(answer)
    if answer.shape != logits.shape:
        return _not_yet(f"give one probability per class: {logits.size} numbers, got {answer.size}.")
    expected = np.exp(logits - logits.max())
    expected /= expected.sum()
    if np.allclose(answer, expected, atol=tolerance):
        return _right("p_i = exp(z_i) / sum_j exp(z_j): " + ", ".join(f"{p:.3f}" for p in expected) + ".")
    if abs(answer.sum() - 1) > tolerance:
        return _not_yet(f"your probabilities add up to {answer.sum():.3f}, not 1: divide each exp(z_i) by the sum over all classes.")
    if logits.sum() != 0 and np.allclose(answer, logits / logits.sum(), atol=tolerance):
        return _not_yet("that divides the logits by their sum; softmax exponentiates them first.")
    return _not_yet("not quite: compute exp(z_i) for each class, then divide each by their sum.")


def check_choice(answer: str | None, right: str, why: str, options: Sequence[str]) -> Feedback:
    """A multiple-choice prediction: ``answer`` must be one of ``options``; ``why`` explains the right one."""
    if (missing := _missing(answer)) is not None:
        return missing
    chosen = str(answer).strip().lower()
    names = [option.lower() for option in options]
    if chosen not in names:
        return _not_yet(f"answer with one of {', '.join(repr(option) for option in options)}, got {answer!r}.")
    if chosen == right.lower():
        return _right(why)
    return _not_yet(f"{answer!r} is not it. Think again before you read on; the explanation is in the solution.")


# chapter 03 ---------------------------------------------------------------------------------------------------


def check_weakest_legible(high_frequency_by_strength: dict[float, float], limit: float, answer: float | None) -> Feedback:
    """Chapter 03: the smallest strength whose image has no more high-frequency energy than ``limit``.

    ``high_frequency_by_strength`` maps each strength tried to the high-frequency energy of its image; "legible"
    means at most as much fine-grained static as the reference image that set ``limit``.
    """
    if (missing := _missing(answer)) is not None:
        return missing
    strengths = sorted(high_frequency_by_strength)
    legible = [s for s in strengths if high_frequency_by_strength[s] <= limit]
    answer = float(answer)
    if answer not in high_frequency_by_strength:
        return _not_yet(f"{answer:g} was not tried; pick one of {', '.join(f'{s:g}' for s in strengths)}.")
    if not legible:
        return _not_yet(f"none of the strengths tried brings the energy down to {limit:.3f}: add stronger ones.")
    weakest = legible[0]
    if answer == weakest:
        return _right(f"{answer:g} is the weakest strength tried whose image is at or below {limit:.3f} "
                      f"(it has {high_frequency_by_strength[answer]:.3f}).")
    if high_frequency_by_strength[answer] > limit:
        return _not_yet(f"at {answer:g} the image still has {high_frequency_by_strength[answer]:.3f} of high-frequency "
                        f"energy, above the limit {limit:.3f}.")
    return _not_yet(f"{answer:g} is legible, but a weaker strength is too: each extra unit of strength costs activation.")


# chapter 04 ---------------------------------------------------------------------------------------------------


def check_negative_logit(objective: Objective | None, class_index: int, classes: int = 1000, seed: int = 0) -> Feedback:
    """Chapter 04: an objective that is maximized where the logit of ``class_index`` is as low as possible."""
    if (missing := _missing(objective)) is not None:
        return missing
    if not isinstance(objective, Objective):
        return _not_yet(f"build an objective from interpviz.optvis (got {type(objective).__name__}).")
    if objective.layers != frozenset(["logits"]):
        return _not_yet(f"the objective reads {sorted(objective.layers)}; a class logit is read from 'logits'.")
    logits = torch.randn(4, classes, generator=torch.Generator().manual_seed(seed))
    scores = objective(StepContext({"logits": logits}, torch.zeros(4, 3, 8, 8)))
    target = logits[:, class_index]
    if torch.allclose(scores, -target, atol=1e-5):
        return _right("-class_logit(c) rises exactly as the logit of c falls.")
    if torch.allclose(scores, target, atol=1e-5):
        return _not_yet("this is the logit itself: it rises with the class. Negate it (every objective is maximized).")
    if torch.allclose(scores, -logits.softmax(dim=1)[:, class_index], atol=1e-5):
        return _not_yet("this lowers the probability, which also rises when other logits go up; use the logit.")
    correlation = float(torch.corrcoef(torch.stack([scores, -target]))[0, 1])
    return _not_yet(f"the scores do not follow minus the logit of class {class_index} "
                    f"(correlation {correlation:.2f}); is the class index the right one?")


def check_mixed_direction(vector, channels: int, first: int, second: int) -> Feedback:
    """Chapter 04: the unit vector that weighs channels ``first`` and ``second`` equally and no other channel."""
    if (missing := _missing(vector)) is not None:
        return missing
    vector = _as_float_array(vector).ravel()
    if vector.size != channels:
        return _not_yet(f"the layer has {channels} channels; the vector has {vector.size} entries.")
    others = np.delete(vector, [first, second])
    if np.abs(others).max(initial=0) > 1e-6:
        return _not_yet("only the two chosen channels may have a weight; every other entry must be 0.")
    if not np.isclose(vector[first], vector[second]) or vector[first] <= 0:
        return _not_yet("give both channels the same positive weight.")
    if not np.isclose(np.linalg.norm(vector), 1.0, atol=1e-4):
        return _not_yet(f"the vector has length {np.linalg.norm(vector):.3f}; divide by it so the length is 1 "
                        "(each weight 1/sqrt(2)).")
    return _right(f"(e_{first} + e_{second}) / sqrt(2): a direction halfway between the two channels.")


# chapter 05 ---------------------------------------------------------------------------------------------------


def check_best_cell(values: torch.Tensor, target, answer: int | None) -> Feedback:
    """Chapter 05: the cell (column of ``values``) whose absolute Pearson correlation with ``target`` is largest."""
    if (missing := _missing(answer)) is not None:
        return missing
    values = values.detach().double().cpu()
    target = torch.as_tensor(_as_float_array(target))
    centred = values - values.mean(dim=0)
    aim = target - target.mean()
    denominator = centred.norm(dim=0) * aim.norm()
    correlation = torch.where(denominator > 0, (centred * aim[:, None]).sum(dim=0) / denominator.clamp_min(1e-12),
                              torch.zeros(()))
    best = int(correlation.abs().argmax())
    answer = int(answer)
    if not 0 <= answer < values.shape[1]:
        return _not_yet(f"there is no cell {answer}: the cells are 0 .. {values.shape[1] - 1}.")
    if abs(float(correlation[answer])) >= abs(float(correlation[best])) - 1e-9:
        return _right(f"cell {answer} has r = {float(correlation[answer]):.3f}, the largest |r| of all cells.")
    if answer == int(correlation.argmax()) and correlation[best] < 0:
        return _not_yet(f"cell {answer} has the largest positive r, but cell {best} has r = {float(correlation[best]):.3f}: "
                        "a cell that falls with the feature tracks it too. Rank by |r|.")
    return _not_yet(f"cell {answer} has r = {float(correlation[answer]):.3f}; another cell reaches |r| = "
                    f"{abs(float(correlation[best])):.3f}.")


# chapter 06 ---------------------------------------------------------------------------------------------------


def check_iou(mask, concept, answer: float | None, tolerance: float = 1e-3) -> Feedback:
    """Chapter 06: the IoU of a binary unit mask with a binary concept mask, worked out by hand."""
    if (missing := _missing(answer)) is not None:
        return missing
    mask, concept = np.asarray(mask, bool), np.asarray(concept, bool)
    intersection = int((mask & concept).sum())
    union = int((mask | concept).sum())
    expected = intersection / union if union else 0.0
    answer = float(answer)
    if abs(answer - expected) <= tolerance:
        return _right(f"{intersection} px in both / {union} px in either = {expected:.3f}.")
    if answer == intersection:
        return _not_yet(f"{intersection} is the intersection in pixels; divide it by the union.")
    if mask.sum() + concept.sum() and abs(answer - intersection / (mask.sum() + concept.sum())) <= tolerance:
        return _not_yet("the union counts the pixels in both masks once: |M| + |L| - |M and L|.")
    if mask.sum() and abs(answer - intersection / mask.sum()) <= tolerance:
        return _not_yet("that is the share of the unit's mask inside the concept (a precision); IoU divides by the union.")
    if concept.sum() and abs(answer - intersection / concept.sum()) <= tolerance:
        return _not_yet("that is the share of the concept that the mask covers (a recall); IoU divides by the union.")
    return _not_yet("not quite: count the pixels in both masks and in either mask (the answer is between 0 and 1).")


def check_dissection_direction(result, layer: str) -> Feedback:
    """Chapters 06 and 09: a dissection of ``layer`` with ``direction="negative"``."""
    if (missing := _missing(result)) is not None:
        return missing
    if isinstance(result, dict):
        if layer not in result:
            return _not_yet(f"the results hold {sorted(result)}, not {layer!r}.")
        result = result[layer]
    if getattr(result, "layer", None) != layer:
        return _not_yet(f"this dissection is of {getattr(result, 'layer', '?')!r}, not {layer!r}.")
    if result.settings.direction != "negative":
        return _not_yet("this dissection looked at the top of each unit's range: pass "
                        "DissectionSettings(direction='negative').")
    return _right(f"{layer} dissected from the bottom of each unit's range: {len(result.detectors())} detectors, "
                  f"{result.unique_detectors()} distinct concepts.")


# chapter 07 ---------------------------------------------------------------------------------------------------


def check_new_detectors(before, after, answer: int | None) -> Feedback:
    """Chapter 07: how many units are detectors in ``after`` but were none in ``before``."""
    if (missing := _missing(answer)) is not None:
        return missing
    threshold = before.settings.iou_threshold
    old = [unit.iou > threshold for unit in before.best()]
    new = [unit.iou > threshold for unit in after.best()]
    expected = sum(1 for was, now in zip(old, new) if now and not was)
    answer = int(answer)
    if answer == expected:
        return _right(f"{expected} units crossed IoU {threshold} between the two dissections.")
    if answer == sum(new) - sum(old):
        return _not_yet(f"{answer} is the change in the number of detectors; some units also stopped being detectors "
                        "in between. Count unit by unit.")
    if answer == sum(new):
        return _not_yet(f"{answer} counts every detector at the end; leave out those that were detectors already.")
    return _not_yet(f"{answer} is not the count; compare each unit's best IoU in both dissections with {threshold}.")


# chapter 08 ---------------------------------------------------------------------------------------------------


def check_folded_weight(weight: torch.Tensor, rotation: torch.Tensor, answer: torch.Tensor | None) -> Feedback:
    """Chapter 08: the classifier weight that undoes a rotation R of its input: W R^T."""
    if (missing := _missing(answer)) is not None:
        return missing
    weight, rotation = weight.detach().double().cpu(), rotation.detach().double().cpu()
    answer = torch.as_tensor(answer).detach().double().cpu()
    expected = weight @ rotation.T
    if answer.shape != expected.shape:
        return _not_yet(f"the folded weight has the classifier's shape {tuple(expected.shape)}, got {tuple(answer.shape)}.")
    if torch.allclose(answer, expected, atol=1e-4):
        return _right("(W R^T)(R x) = W x: the classifier sees the rotated features and gives the same logits.")
    if torch.allclose(answer, weight @ rotation, atol=1e-4):
        return _not_yet("W R would rotate twice; the inverse of a rotation is its transpose.")
    return _not_yet("the logits change with this weight: fold the inverse rotation (R^T) into W.")


def check_prediction(prediction: str | None, before: float, after: float, tolerance: float = 0.1) -> Feedback:
    """A prediction "fewer", "same" or "more" for a count measured ``before`` and ``after`` a change.

    "same" means within ``tolerance`` (a share of ``before``). This compares your prediction with the measurement;
    a wrong prediction is a result too: say what you expected, and why the network did otherwise.
    """
    if (missing := _missing(prediction)) is not None:
        return missing
    prediction = str(prediction).strip().lower()
    if prediction not in ("fewer", "same", "more"):
        return _not_yet(f"predict 'fewer', 'same' or 'more', got {prediction!r}.")
    band = tolerance * max(abs(before), 1)
    measured = "same" if abs(after - before) <= band else "fewer" if after < before else "more"
    message = f"measured {before:g} -> {after:g} ({measured})."
    return _right("your prediction matched: " + message) if prediction == measured else _not_yet(
        f"you predicted '{prediction}', but the run {message} Why might this network behave otherwise?")


# chapter 09 ---------------------------------------------------------------------------------------------------


def check_channel_count(model, layers: Sequence[str], answer: int | None) -> Feedback:
    """Chapter 09: the total number of channels over ``layers``."""
    if (missing := _missing(answer)) is not None:
        return missing
    counts = [model.layer(name).channels for name in layers]
    expected = sum(counts)
    answer = int(answer)
    if answer == expected:
        return _right(f"{expected:,} channels in {len(layers)} layers.")
    if answer == len(layers):
        return _not_yet("that is the number of layers; add up each layer's channels.")
    if answer in counts:
        return _not_yet("that is one layer's channels; add up all of them.")
    return _not_yet(f"{answer:,} is {'more' if answer > expected else 'fewer'} than the layers hold; "
                    "sum model.layer(name).channels over the layers.")
