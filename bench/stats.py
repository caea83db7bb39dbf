"""The arithmetic of the figures: percentiles, summaries, differences and ratios.

Percentiles use linear interpolation between closest ranks (numpy's default
"linear" method), so p50 of an even-sized sample is the mean of the middle two.
"Added" figures compare two independent samples (direct vs through a gateway):
they are differences of percentiles, not percentiles of differences, because
requests are not paired one to one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

PERCENTILES = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of `values`, linearly interpolated; NaN when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    fraction = rank - low
    # a + (b - a) * f is exact at the ends and monotone for sorted inputs
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def summary(values: Sequence[float]) -> dict[str, float]:
    """Count, mean, min, max and p50/p90/p99 of a sample (milliseconds in, milliseconds out)."""
    if not values:
        return {
            "n": 0,
            "mean": math.nan,
            "min": math.nan,
            "max": math.nan,
            "p50": math.nan,
            "p90": math.nan,
            "p99": math.nan,
        }
    out: dict[str, float] = {
        "n": len(values),
        "mean": math.fsum(values) / len(values),
        "min": float(min(values)),
        "max": float(max(values)),
    }
    for q in PERCENTILES:
        out[f"p{q}"] = percentile(values, q)
    return out


def difference(
    through: dict[str, float], direct: dict[str, float], keys: Iterable[str] = ("p50", "p90", "p99")
) -> dict[str, float]:
    """What a gateway adds: `through[k] - direct[k]` for each percentile key."""
    return {k: through[k] - direct[k] for k in keys}


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is zero or NaN."""
    if denominator == 0 or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return numerator / denominator


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals [start, end) open at one instant (streams held at once)."""
    edges: list[tuple[float, int]] = []
    for start, end in intervals:
        if end < start:
            raise ValueError(f"interval ends before it starts: {start} > {end}")
        edges.append((start, 1))
        edges.append((end, -1))
    # at equal times close before opening: [a, b) and [b, c) do not overlap
    edges.sort(key=lambda e: (e[0], e[1]))
    held = best = 0
    for _, step in edges:
        held += step
        best = max(best, held)
    return best


def rounded(value: float, digits: int = 3) -> float | None:
    """A JSON-safe figure: NaN and infinities become null."""
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, digits)
