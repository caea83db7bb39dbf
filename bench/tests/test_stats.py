"""The arithmetic behind every figure: percentiles, differences, ratios, overlap."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import stats

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(finite, min_size=1, max_size=200)


def test_percentile_matches_hand_computed_values() -> None:
    values = [10.0, 1.0, 4.0, 2.0, 3.0]  # sorted: 1 2 3 4 10
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 50) == 3.0
    assert stats.percentile(values, 100) == 10.0
    assert stats.percentile(values, 90) == pytest.approx(4 + (10 - 4) * 0.6)  # rank 3.6
    assert stats.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5


def test_percentile_of_nothing_is_nan_and_bad_q_is_refused() -> None:
    assert math.isnan(stats.percentile([], 50))
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


@given(samples)
def test_percentile_agrees_with_numpy_linear(values: list[float]) -> None:
    np = pytest.importorskip("numpy")
    for q in (0, 1, 25, 50, 90, 99, 99.9, 100):
        assert stats.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-9)


@given(samples, st.floats(0, 100), st.floats(0, 100))
def test_percentile_is_monotone_and_bounded(values: list[float], q1: float, q2: float) -> None:
    low, high = sorted((q1, q2))
    assert min(values) <= stats.percentile(values, low) <= stats.percentile(values, high) <= max(values)


@given(samples, finite)
def test_shifting_every_sample_shifts_the_difference_exactly(values: list[float], shift: float) -> None:
    direct = stats.summary(values)
    through = stats.summary([v + shift for v in values])
    added = stats.difference(through, direct)
    for key in ("p50", "p90", "p99"):
        assert added[key] == pytest.approx(shift, abs=1e-6 * (1 + abs(shift) + max(abs(v) for v in values)))


def test_summary_fields() -> None:
    s = stats.summary([1.0, 2.0, 3.0, 4.0])
    assert s == {
        "n": 4,
        "mean": 2.5,
        "min": 1.0,
        "max": 4.0,
        "p50": 2.5,
        "p90": pytest.approx(3.7),
        "p99": pytest.approx(3.97),
    }
    assert stats.summary([])["n"] == 0 and math.isnan(stats.summary([])["p99"])


def test_difference_is_through_minus_direct() -> None:
    assert stats.difference({"p50": 5.0, "p90": 7.0, "p99": 9.0}, {"p50": 4.0, "p90": 4.5, "p99": 10.0}) == {
        "p50": 1.0,
        "p90": 2.5,
        "p99": -1.0,
    }


def test_ratio_guards_zero_and_nan() -> None:
    assert stats.ratio(3.0, 2.0) == 1.5
    assert math.isnan(stats.ratio(1.0, 0.0))
    assert math.isnan(stats.ratio(math.nan, 1.0))


def test_max_overlap_counts_streams_open_at_once() -> None:
    assert stats.max_overlap([]) == 0
    assert stats.max_overlap([(0, 1), (1, 2), (2, 3)]) == 1  # back to back: never two at once
    assert stats.max_overlap([(0, 10), (1, 2), (1.5, 3), (2.5, 11)]) == 3
    with pytest.raises(ValueError):
        stats.max_overlap([(2, 1)])


@given(
    st.lists(
        st.tuples(st.floats(0, 100), st.floats(0, 100)).map(
            lambda t: (min(t), max(t)) if t[0] != t[1] else (t[0], t[0] + 1)
        ),
        max_size=50,
    )
)
def test_max_overlap_equals_brute_force(intervals: list[tuple[float, float]]) -> None:
    points = {s for s, _ in intervals}
    brute = max((sum(1 for s, e in intervals if s <= p < e) for p in points), default=0)
    assert stats.max_overlap(intervals) == brute


def test_rounded_makes_json_safe_numbers() -> None:
    assert stats.rounded(math.nan) is None
    assert stats.rounded(math.inf) is None
    assert stats.rounded(1.23456) == 1.235
