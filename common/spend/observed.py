"""What recent requests really cost, per model: the figures admission holds instead of the worst case.

Claude Code asks for `max_tokens` 32000–128000 on every request and sends its
whole ~50–90 KB prompt each turn, yet a typical reply is a few hundred to a few
thousand output tokens and most of the prompt is a cache read. Holding the
worst case refuses a developer far below the cap as soon as a few requests are
in flight. So admission holds an *expected* cost built from two figures learnt
per model: a high percentile of recent output tokens (capped by the request's
`max_tokens`), and a high percentile of the ratio between what a prompt really
cost and the same prompt priced as plain input tokens (caching makes it small).

Each instance keeps the last `WINDOW` settles per model in memory (fed by every
settle, no round trip) and seeds an empty window once from the ledger's recent
usage rows. Until a model has `MIN_SAMPLES` figures, the defaults apply:
`DEFAULT_OUTPUT_TOKENS` output and the plain input price (ratio 1).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

WINDOW = 512  # settles kept per model
MIN_SAMPLES = 8  # fewer than this: defaults
MAX_MODELS = 256  # client-chosen ids are bounded
OUTPUT_PERCENTILE = 0.95
INPUT_RATIO_PERCENTILE = 0.95
DEFAULT_OUTPUT_TOKENS = 4096  # before any history: about the 99th percentile of Claude Code replies
DEFAULT_INPUT_RATIO = 1.0  # before any history: every prompt token at the plain input price


@dataclass(frozen=True, slots=True)
class Expectation:
    """The figures admission prices a request with."""

    output_tokens: int  # before the `max_tokens` ceiling
    input_ratio: float  # real prompt cost / prompt priced as plain input tokens
    samples: int


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (no interpolation: a figure that occurred)."""
    rank = max(0, min(len(sorted_values) - 1, int(fraction * len(sorted_values) + 0.999999) - 1))
    return sorted_values[rank]


class _Window:
    __slots__ = ("cached", "dirty", "input_ratios", "outputs")

    def __init__(self) -> None:
        self.outputs: deque[int] = deque(maxlen=WINDOW)
        self.input_ratios: deque[float] = deque(maxlen=WINDOW)
        self.cached: Expectation | None = None
        self.dirty = 0

    def add(self, output_tokens: int, input_ratio: float | None) -> None:
        self.outputs.append(max(0, output_tokens))
        if input_ratio is not None:
            self.input_ratios.append(max(0.0, input_ratio))
        self.dirty += 1

    def expectation(self) -> Expectation:
        # Sorting 512 numbers costs ~20 µs: redo it every 16 new figures, not per request
        # (but at once while a model is still below MIN_SAMPLES).
        stale = self.dirty >= 16 or (self.dirty > 0 and len(self.outputs) <= MIN_SAMPLES)
        if self.cached is None or stale:
            samples = len(self.outputs)
            if samples < MIN_SAMPLES:
                output = DEFAULT_OUTPUT_TOKENS
            else:
                output = int(_percentile(sorted(self.outputs), OUTPUT_PERCENTILE))
            if len(self.input_ratios) < MIN_SAMPLES:
                ratio = DEFAULT_INPUT_RATIO
            else:
                ratio = _percentile(sorted(self.input_ratios), INPUT_RATIO_PERCENTILE)
            self.cached = Expectation(output, ratio, samples)
            self.dirty = 0
        return self.cached


class Observed:
    """Recent figures per canonical model id, for this instance (one object per process)."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._seeded = False

    def expectation(self, model: str) -> Expectation:
        window = self._windows.get(model)
        if window is None:
            return Expectation(DEFAULT_OUTPUT_TOKENS, DEFAULT_INPUT_RATIO, 0)
        with self._lock:
            return window.expectation()

    def record(self, model: str, output_tokens: int, input_ratio: float | None) -> None:
        """One settled request's figures (`input_ratio` None when the prompt size was unknown)."""
        with self._lock:
            window = self._windows.get(model)
            if window is None:
                if len(self._windows) >= MAX_MODELS:
                    return
                window = self._windows[model] = _Window()
            window.add(output_tokens, input_ratio)

    @property
    def seeded(self) -> bool:
        return self._seeded

    def seed(self, rows: Iterable[tuple[str, int, float | None]]) -> None:
        """Fill windows from the ledger's recent rows (model, output tokens, input ratio), oldest first; once."""
        with self._lock:
            if self._seeded:
                return
            self._seeded = True
        for model, output_tokens, ratio in rows:
            self.record(model, output_tokens, ratio)

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
            self._seeded = False


OBSERVED = Observed()  # lives as long as the process; fed by settles, read by reserve
