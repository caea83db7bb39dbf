"""The learnt figures admission holds: percentiles of recent output tokens and prompt-cost ratios, per model."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from common.spend import observed
from common.spend.observed import Observed


def test_defaults_until_enough_samples() -> None:
    seen = Observed()
    assert seen.expectation("claude-opus-4-7").output_tokens == observed.DEFAULT_OUTPUT_TOKENS
    for _ in range(observed.MIN_SAMPLES - 1):
        seen.record("claude-opus-4-7", 100, 0.2)
    assert seen.expectation("claude-opus-4-7").output_tokens == observed.DEFAULT_OUTPUT_TOKENS
    seen.record("claude-opus-4-7", 100, 0.2)
    learnt = seen.expectation("claude-opus-4-7")
    assert (learnt.output_tokens, learnt.input_ratio, learnt.samples) == (100, 0.2, observed.MIN_SAMPLES)
    assert seen.expectation("claude-haiku-4-5").samples == 0  # per model


def test_high_percentile_of_the_window() -> None:
    seen = Observed()
    for tokens in range(1, 101):  # 1..100
        seen.record("m", tokens, tokens / 100)
    got = seen.expectation("m")
    assert got.output_tokens == 95  # nearest rank: the 95th of 100
    assert got.input_ratio == 0.95


def test_window_forgets_old_figures() -> None:
    seen = Observed()
    for _ in range(observed.WINDOW):
        seen.record("m", 50_000, 1.0)
    for _ in range(observed.WINDOW):
        seen.record("m", 300, 0.1)
    assert seen.expectation("m").output_tokens == 300


def test_seed_applies_once() -> None:
    seen = Observed()
    seen.seed([("m", 700, 0.3)] * 20)
    seen.seed([("m", 9_000, 1.0)] * 20)
    assert seen.seeded
    assert seen.expectation("m").output_tokens == 700


def test_models_are_bounded() -> None:
    seen = Observed()
    for i in range(observed.MAX_MODELS + 10):
        seen.record(f"m{i}", 1, None)
    assert seen.expectation(f"m{observed.MAX_MODELS + 5}").samples == 0


@given(st.lists(st.integers(0, 200_000), min_size=observed.MIN_SAMPLES, max_size=600))
def test_percentile_is_an_observed_value_covering_95_percent(values: list[int]) -> None:
    seen = Observed()
    for v in values:
        seen.record("m", v, None)
    window = values[-observed.WINDOW :]
    got = seen.expectation("m").output_tokens
    assert got in window
    assert sum(v <= got for v in window) >= 0.95 * len(window)
