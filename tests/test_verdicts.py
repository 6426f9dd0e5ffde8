"""The verdict rule on hand-made numbers: clear differences hold, overlapping spreads are inconclusive."""

import math

import pytest

from interpviz.verdicts import DID_NOT_HOLD, HELD, INCONCLUSIVE, combine, compare, paired_compare, spread


def test_spread_uses_the_sample_standard_deviation():
    measured = spread([1, 2, 3])
    assert measured.mean == 2 and measured.std == pytest.approx(1.0)
    assert (measured.low, measured.high, measured.count) == (1, 3, 3)
    assert spread([5]).std == 0 and str(spread([5])) == "5"
    with pytest.raises(ValueError, match="at least one"):
        spread([])
    with pytest.raises(ValueError, match="finite"):
        spread([1, math.nan])


def test_a_clear_difference_held():
    verdict = compare([20, 22, 21], [10, 11, 12])
    assert verdict.verdict == HELD
    assert verdict.difference == pytest.approx(10)
    assert verdict.standard_error == pytest.approx(math.sqrt(1 / 3 + 1 / 3))


def test_overlapping_spreads_are_inconclusive():
    assert compare([13, 16, 11], [12, 10, 14]).verdict == INCONCLUSIVE


def test_a_difference_of_means_without_separation_is_not_enough():
    # the means differ by 2 s.e., but one run of the larger side is below one of the smaller side
    assert compare([30, 31, 19], [20, 20.5, 21]).verdict == INCONCLUSIVE


def test_a_clear_difference_the_other_way_did_not_hold():
    assert compare([10, 11, 12], [20, 22, 21]).verdict == DID_NOT_HOLD


def test_two_sides_that_agree_closely_did_not_hold():
    # the claim "A > B" by a count of at least 1: the data rule out such a difference
    assert compare([13, 13, 13.2], [13.1, 13, 12.9]).verdict == DID_NOT_HOLD
    # the same numbers as shares, with a smallest effect far below the noise: inconclusive
    assert compare([13, 13, 13.2], [13.1, 13, 12.9], smallest_effect=0.0).verdict == INCONCLUSIVE


def test_one_run_per_side_is_always_inconclusive():
    assert compare([100], [1]).verdict == INCONCLUSIVE
    assert compare([1], [100]).verdict == INCONCLUSIVE


def test_the_default_smallest_effect_is_ten_percent_with_a_floor_of_one_for_counts():
    assert compare([100, 101], [50, 51]).smallest_effect == pytest.approx(10.05)
    assert compare([3, 4], [1, 2]).smallest_effect == 1.0
    assert compare([0.3, 0.4], [0.1, 0.2], counts=False).smallest_effect == pytest.approx(0.035)
    with pytest.raises(ValueError, match="smallest_effect"):
        compare([1, 2], [1, 2], smallest_effect=-1)


def test_paired_runs_remove_what_the_seed_moves_in_both():
    before = [5, 15, 25]
    after = [7, 17.5, 26.5]
    # unpaired, the seed-to-seed spread hides the change; paired, every seed rose
    assert compare(after, before).verdict == INCONCLUSIVE
    assert paired_compare(after, before).verdict == HELD
    assert paired_compare(before, after).verdict == DID_NOT_HOLD
    with pytest.raises(ValueError, match="as many values"):
        paired_compare([1, 2], [1])


def test_the_verdict_prints_both_spreads():
    text = str(compare([20, 22, 21], [10, 11, 12]))
    assert text.startswith("held: 21 ± 1") and "11 ± 1" in text and "n=3" in text


def test_a_fixed_network_against_random_seeds():
    # one pretrained network (no spread) against three random-weight seeds
    assert compare([40], [3, 5, 4]).verdict == INCONCLUSIVE
    assert compare([40], [3, 5, 4], fixed=True).verdict == HELD
    assert compare([4], [4, 4.2, 3.9], fixed=True).verdict == DID_NOT_HOLD
    assert compare([40], [1], fixed=True).verdict == INCONCLUSIVE


def test_combine_needs_every_part():
    held, open_, failed = compare([20, 22, 21], [10, 11, 12]), compare([13, 16, 11], [12, 10, 14]), "did not hold"
    assert combine(held, held) == HELD
    assert combine(held, open_) == INCONCLUSIVE
    assert combine(held, open_, failed) == DID_NOT_HOLD
    with pytest.raises(ValueError):
        combine()
