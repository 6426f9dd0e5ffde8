"""Verdicts from repeated runs: "held", "did not hold" or "inconclusive", by one stated rule.

A finding of the papers is a claim that one quantity is larger than another (trained networks have more
unique detectors than random ones; a rotation lowers the count). Measured once, a difference can be seed
noise. Measured over several seeds per side, ``compare`` decides by this rule, the same everywhere:

- the difference d = mean(larger side) - mean(smaller side), its standard error
  se = sqrt(var_a / n_a + var_b / n_b) (sample variances, n - 1 in the denominator), and the smallest
  difference worth a name, ``smallest_effect`` (default: 10% of the larger mean, and at least 1 for counts);
- **held** when d - 2 se > 0 *and* every run of the larger side is above every run of the smaller one (with
  3 seeds a side, complete separation happens by chance with probability 1/20 when there is no effect);
- **did not hold** when d + 2 se < smallest_effect: the data rule out an effect of the claimed size in the
  claimed direction (this covers a clear difference the other way, and two sides that agree closely);
- **inconclusive** otherwise: the spreads overlap, more seeds are needed.

With one run per side there is no spread, and the verdict is "inconclusive". A side measured once may count
as fixed (no spread) only when it is not a random draw: a single pretrained network's own units on a fixed
dataset (``fixed=True``); the other side's seeds then give the standard error. ``combine`` joins the verdicts
of a finding with two parts: held when both held, did not hold when either did not, else inconclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

HELD, DID_NOT_HOLD, INCONCLUSIVE = "held", "did not hold", "inconclusive"


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation, smallest and largest of repeated measurements of one quantity."""

    values: tuple[float, ...]

    def __post_init__(self):
        if not self.values:
            raise ValueError("a spread needs at least one value")
        if any(not math.isfinite(value) for value in self.values):
            raise ValueError(f"values must be finite numbers, got {self.values}")

    @property
    def count(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.count

    @property
    def std(self) -> float:
        """Sample standard deviation (0 for a single value)."""
        if self.count < 2:
            return 0.0
        return math.sqrt(sum((value - self.mean) ** 2 for value in self.values) / (self.count - 1))

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def __str__(self) -> str:
        if self.count == 1:
            return f"{self.mean:.3g}"
        return f"{self.mean:.3g} ± {self.std:.2g} (range {self.low:.3g}-{self.high:.3g}, n={self.count})"


def spread(values: Sequence[float]) -> Spread:
    """The spread of repeated measurements (e.g. one number per network seed)."""
    return Spread(tuple(float(value) for value in values))


@dataclass(frozen=True)
class Verdict:
    """The outcome of ``compare``: the verdict word, both spreads, the difference and its standard error."""

    verdict: str
    larger: Spread
    smaller: Spread
    difference: float
    standard_error: float
    smallest_effect: float

    def __str__(self) -> str:
        return (f"{self.verdict}: {self.larger} against {self.smaller}; difference {self.difference:+.3g} "
                f"± {2 * self.standard_error:.2g} (2 s.e.), smallest effect {self.smallest_effect:.3g}")


def compare(expected_larger: Sequence[float], expected_smaller: Sequence[float],
            smallest_effect: float | None = None, counts: bool = True, fixed: bool = False) -> Verdict:
    """Whether the claim "``expected_larger`` > ``expected_smaller``" held, by the rule in the module docstring.

    ``counts=True`` (numbers of detectors) puts a floor of 1 under the default smallest effect; for
    shares or IoUs pass ``counts=False`` or an explicit ``smallest_effect``. ``fixed=True``: a side with one
    value is a fixed quantity, not one draw (see the module docstring).
    """
    larger, smaller = spread(expected_larger), spread(expected_smaller)
    smallest_effect = _smallest_effect(larger, smaller, smallest_effect, counts)
    difference = larger.mean - smaller.mean
    error = math.sqrt(larger.std**2 / larger.count + smaller.std**2 / smaller.count)
    enough = min(larger.count, smaller.count) >= 2 or (fixed and max(larger.count, smaller.count) >= 2)
    word = _rule(enough, difference, error, larger.low > smaller.high, smallest_effect)
    return Verdict(word, larger, smaller, difference, error, smallest_effect)


def _smallest_effect(larger: Spread, smaller: Spread, given: float | None, counts: bool) -> float:
    """The given smallest effect, or 10% of the larger mean (at least 1 for counts)."""
    if given is None:
        given = 0.1 * max(abs(larger.mean), abs(smaller.mean))
        if counts:
            given = max(given, 1.0)
    if given < 0:
        raise ValueError(f"smallest_effect must be >= 0, got {given}")
    return given


def _rule(enough: bool, difference: float, error: float, separated: bool, smallest_effect: float) -> str:
    """The verdict word of the module docstring's rule."""
    if not enough:
        return INCONCLUSIVE
    if difference - 2 * error > 0 and separated:
        return HELD
    if difference + 2 * error < smallest_effect:
        return DID_NOT_HOLD
    return INCONCLUSIVE


def paired_compare(expected_larger: Sequence[float], expected_smaller: Sequence[float],
                   smallest_effect: float | None = None, counts: bool = True) -> Verdict:
    """``compare`` for paired runs (the same seed measured twice, e.g. before and after training): the rule is
    applied to the per-seed differences against zero, which removes what the seed moves in both."""
    if len(expected_larger) != len(expected_smaller):
        raise ValueError(f"paired runs need as many values on each side, got {len(expected_larger)} and "
                         f"{len(expected_smaller)}")
    larger, smaller = spread(expected_larger), spread(expected_smaller)
    smallest_effect = _smallest_effect(larger, smaller, smallest_effect, counts)
    differences = spread([a - b for a, b in zip(expected_larger, expected_smaller)])
    error = differences.std / math.sqrt(differences.count)
    word = _rule(differences.count >= 2, differences.mean, error, differences.low > 0, smallest_effect)
    return Verdict(word, larger, smaller, differences.mean, error, smallest_effect)


def combine(*verdicts: Verdict | str) -> str:
    """One word for a finding with several parts: held if all held, did not hold if any did not, else inconclusive."""
    words = [verdict if isinstance(verdict, str) else verdict.verdict for verdict in verdicts]
    if not words:
        raise ValueError("nothing to combine")
    if all(word == HELD for word in words):
        return HELD
    return DID_NOT_HOLD if DID_NOT_HOLD in words else INCONCLUSIVE
