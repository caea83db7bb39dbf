"""List prices: exact arithmetic, every spelling of an id, overrides, multiplier, the default."""

from __future__ import annotations

import sys

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from common.config import Pricing
from common.core.usage import Usage
from common.spend import pricing

counts = st.integers(min_value=0, max_value=5_000_000)
usages = st.builds(Usage, counts, counts, counts, counts, counts)
KINDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_5m_input_tokens",
    "cache_creation_1h_input_tokens",
)


@given(
    usages,
    st.sampled_from(KINDS),
    st.integers(min_value=1, max_value=1_000_000),
    st.sampled_from(sorted(pricing.TABLE)),
)
def test_cost_is_monotonic_in_every_token_count(usage: Usage, kind: str, more: int, key: str) -> None:
    book = pricing.build(None)
    before = book.cost_micros(key, usage)
    setattr(usage, kind, getattr(usage, kind) + more)
    after = book.cost_micros(key, usage)
    assert after >= before
    # Every kind has a positive price, so a million more tokens always costs more.
    if more >= 1_000_000:
        assert after > before


@given(usages, usages)
def test_cost_is_subadditive_by_at_most_one_rounding(a: Usage, b: Usage) -> None:
    """Rounding up happens once per request: two requests cost at most 1 micro-dollar more than one."""
    price = pricing.TABLE["claude-sonnet-4-5"]
    both = Usage(*(getattr(a, k) + getattr(b, k) for k in KINDS))
    combined = pricing.cost_micros(price, both)
    separate = pricing.cost_micros(price, a) + pricing.cost_micros(price, b)
    assert combined <= separate <= combined + 1


def test_exact_figures_in_micro_dollars() -> None:
    book = pricing.build(None)
    # Sonnet 4.5: $3 in, $15 out, 5m write $3.75, 1h write $6, read $0.30 per MTok.
    usage = Usage(
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cache_read_input_tokens=1_000_000,
        cache_creation_5m_input_tokens=1_000_000,
        cache_creation_1h_input_tokens=1_000_000,
    )
    assert book.cost_micros("claude-sonnet-4-5", usage) == 3_000_000 + 15_000_000 + 300_000 + 3_750_000 + 6_000_000
    # Haiku 3: $0.25/MTok input, so 3 tokens are 0.75 µ$, rounded up once to 1.
    assert book.cost_micros("claude-3-haiku-20240307", Usage(input_tokens=3)) == 1
    assert book.cost_micros("claude-opus-4-5", Usage(input_tokens=1000, output_tokens=2000)) == 5_000 + 50_000
    assert pricing.TABLE["claude-haiku-3-5"].cache_write_5m == 1_000_000  # 0.80 * 1.25
    assert pricing.TABLE["claude-haiku-3"].cache_read == 25_000  # 0.25 * 0.1


SPELLINGS = {
    "claude-sonnet-4-5": [
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5@20250929",
        "CLAUDE-SONNET-4-5",
        "claude-sonnet-4-5[1m]",
        "publishers/anthropic/models/claude-sonnet-4-5@20250929",
    ],
    "claude-opus-4-1": ["claude-opus-4-1", "claude-opus-4-1-20250805", "claude-opus-4-1@20250805"],
    "claude-opus-4": ["claude-opus-4-20250514", "claude-opus-4@20250514"],
    "claude-haiku-4-5": ["claude-haiku-4-5-20251001", "claude-haiku-4-5@20251001"],
    "claude-sonnet-3-7": ["claude-3-7-sonnet-20250219", "claude-3-7-sonnet@20250219", "claude-3-7-sonnet-latest"],
    "claude-sonnet-3-5": ["claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet-20240620"],
    "claude-haiku-3-5": ["claude-3-5-haiku@20241022", "claude-3-5-haiku-20241022"],
    "claude-haiku-3": ["claude-3-haiku@20240307"],
    "claude-opus-3": ["claude-3-opus@20240229"],
}


def test_every_spelling_resolves_to_one_row() -> None:
    book = pricing.build(None)
    for key, spellings in SPELLINGS.items():
        for spelling in spellings:
            assert pricing.canonical_key(spelling) == key, spelling
            price, known = book.price(spelling)
            assert known and price == pricing.TABLE[key], spelling


@given(st.sampled_from(sorted(pricing.TABLE)), st.from_regex(r"20[0-9]{6}", fullmatch=True), st.sampled_from("-@"))
def test_dated_ids_resolve_like_the_plain_id(key: str, stamp: str, sep: str) -> None:
    assert pricing.canonical_key(f"{key}{sep}{stamp}") == key


def test_unknown_model_gets_the_most_expensive_row_and_a_log_line() -> None:
    import io

    from common.core import logs

    stream = io.StringIO()
    logs.set_stream(stream)
    book = pricing.build(None)
    price, known = book.price("claude-mystery-9")
    assert not known
    assert price == pricing.DEFAULT_PRICE
    assert max(p.output for p in pricing.TABLE.values()) == pricing.DEFAULT_PRICE.output
    logs.set_stream(sys.stderr)
    out = stream.getvalue()
    assert "claude-mystery-9" in out and "conservative default" in out


def test_overrides_and_multiplier_from_config() -> None:
    cfg = msgspec.convert(
        {
            "multiplier": 1.1,
            "overrides": [
                {"model": "claude-sonnet-4-5@20250929", "input": 2.2, "output": 11.1, "upstream": "vertex"},
                {"model": "claude-haiku-4-5", "input": 0.5, "output": 2.5, "cache_read": 0.07},
            ],
        },
        Pricing,
    )
    book = pricing.build(cfg)
    vertex, _ = book.price("claude-sonnet-4-5", "vertex")
    assert vertex.input == 2_200_000 and vertex.output == 11_100_000 and vertex.cache_write_5m == 2_750_000
    other, _ = book.price("claude-sonnet-4-5", "anthropic")
    assert other == pricing.TABLE["claude-sonnet-4-5"]
    haiku, _ = book.price("claude-haiku-4-5-20251001")
    assert haiku.cache_read == 70_000 and haiku.cache_write_1h == 1_000_000
    # 1.1 is applied exactly (11/10), not as the float 1.1000000000000000888.
    assert (book.multiplier_num, book.multiplier_den) == (11, 10)
    assert book.cost_micros("claude-opus-4-5", Usage(input_tokens=1_000_000)) == 5_500_000


def test_money_formatting() -> None:
    assert pricing.cents_string(12_345_678) == "1234.5678"
    assert pricing.cents_string(50_000_000) == "5000"
    assert pricing.cents_string(0) == "0"
    assert pricing.format_usd(12_345_678) == "$12.35"
