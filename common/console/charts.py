"""Charts drawn on the server as SVG: no script, no library, styled by console.css (light and dark).

Colours come from CSS classes (`series-0` … `series-7`, `axis`, `grid`,
`label`), whose values switch with `prefers-color-scheme`, so one SVG reads
well on both backgrounds. Every bar segment has a `<title>` (the browser shows
it on hover) and the chart a `<desc>` summarising it for screen readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

from markupsafe import Markup

SERIES = 8  # distinct colours; more models share the last one ("other")


@dataclass(frozen=True, slots=True)
class Segment:
    day: date
    series: str
    micros: int


def _nice_step(top: int) -> int:
    """A round grid step (1, 2 or 5 × 10^n micro-dollars) giving 3 to 6 lines below `top`."""
    step = 10_000  # one cent
    while top / step > 6:
        for factor in (2, 2.5, 2):
            step = int(step * factor)
            if top / step <= 6:
                break
    return step


def _money(micros: int) -> str:
    dollars = micros / 1_000_000
    if dollars >= 1000:
        return f"${dollars / 1000:.1f}k"
    if dollars >= 10 or dollars == int(dollars):
        return f"${dollars:,.0f}"
    return f"${dollars:.2f}"


def stacked_days(
    segments: list[Segment], first: date, days: int, title: str, width: int = 760, height: int = 260
) -> tuple[Markup, list[tuple[str, int]]]:
    """A stacked bar per day (a segment per series); returns the SVG and the legend (series, colour index)."""
    order: dict[str, int] = {}
    totals: dict[str, int] = {}
    for seg in segments:
        totals[seg.series] = totals.get(seg.series, 0) + seg.micros
    for name in sorted(totals, key=lambda s: (-totals[s], s)):
        order[name] = min(len(order), SERIES - 1)
    per_day: dict[date, list[Segment]] = {}
    for seg in segments:
        per_day.setdefault(seg.day, []).append(seg)
    day_totals = {d: sum(s.micros for s in segs) for d, segs in per_day.items()}
    top = max(day_totals.values(), default=0)
    step = _nice_step(max(top, 10_000))
    ceiling = step * (-(-max(top, 1) // step))
    left, right, top_pad, bottom = 56, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    slot = plot_w / days
    bar = max(2.0, slot * 0.72)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title chart-desc"'
        ' xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(_describe(day_totals, first, days))}</desc>',
    ]
    value = 0
    while value <= ceiling:
        y = top_pad + plot_h - plot_h * value / ceiling
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="label" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_money(value)}</text>')
        value += step
    for i in range(days):
        day = first + timedelta(days=i)
        x = left + i * slot + (slot - bar) / 2
        y = top_pad + plot_h
        for seg in sorted(per_day.get(day, []), key=lambda s: order[s.series]):
            h = plot_h * seg.micros / ceiling
            if h <= 0:
                continue
            y -= h
            parts.append(
                f'<rect class="series-{order[seg.series]}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                f"<title>{day.isoformat()} · {escape(seg.series)} · {_money_exact(seg.micros)}</title></rect>"
            )
        if i % 5 == 0 or i == days - 1:
            parts.append(
                f'<text class="label" x="{left + i * slot + slot / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                f"{day.strftime('%d %b')}</text>"
            )
    parts.append(
        f'<line class="axis" x1="{left}" x2="{width - right}" y1="{top_pad + plot_h}" y2="{top_pad + plot_h}"/>'
    )
    parts.append("</svg>")
    legend = [(name, index) for name, index in order.items()]
    return Markup("".join(parts)), legend  # noqa: S704 (every interpolated text is escaped above)


def _money_exact(micros: int) -> str:
    cents = (micros + 5_000) // 10_000
    return f"${cents // 100:,}.{cents % 100:02d}"


def _describe(day_totals: dict[date, int], first: date, days: int) -> str:
    if not day_totals:
        return f"No spend in the {days} days from {first.isoformat()}."
    peak_day = max(day_totals, key=lambda d: day_totals[d])
    return (
        f"Spend per day for {days} days from {first.isoformat()}; highest on {peak_day.isoformat()} "
        f"at {_money_exact(day_totals[peak_day])}."
    )


def meter(percent: float) -> Markup:
    """A horizontal bar for a cap's standing (no inline style: the width is an SVG attribute)."""
    shown = max(0.0, min(percent, 100.0))
    level = "bad" if percent >= 100 else "warn" if percent >= 75 else "ok"
    return Markup(  # noqa: S704 (numbers only)
        '<svg class="meter" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true">'
        '<rect class="meter-track" x="0" y="0" width="100" height="8" rx="2"/>'
        f'<rect class="meter-{level}" x="0" y="0" width="{shown:.1f}" height="8" rx="2"/></svg>'
    )
