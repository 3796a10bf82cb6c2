"""Response times at microsecond resolution, in HDR histograms (the `hdrhistogram` package).

Why: Locust's histogram rounds every response under 100 ms to whole milliseconds, so on loopback a
fast server's p50 and p99 read 0, 1 or 2 ms. An HDR histogram with 3 significant digits keeps
every value within 0.1% at any magnitude, has a fixed size, and merges exactly (phases, processes).

Cost: hdrh's record_value is pure Python (~2 us here, a tenth of a request's budget at 50k/s), so
`Recorder.record` only counts whole microseconds in a dict (~0.2 us) and moves the counts into the
histogram in bulk when the dict grows or the histogram is read.
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, DIGITS = 1, 3_600_000_000, 3  # 1 us to an hour, 3 significant digits
_FLUSH_AT = 4096  # distinct microsecond values held before they go into the histogram


def new() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


class Recorder:
    """One histogram fed one response time at a time. `tap`, when set, also receives every count the
    histogram takes (whole microseconds -> count), for a histogram of each second (runner/locust/locustfile.py)
    at no cost per response."""

    __slots__ = ("histogram", "_counts", "tap")

    def __init__(self, tap: dict[int, int] | None = None) -> None:
        self.histogram = new()
        self._counts: dict[int, int] = {}
        self.tap = tap

    def record(self, ms: float) -> None:
        us = int(ms * 1000.0)
        counts = self._counts
        counts[us] = counts.get(us, 0) + 1
        if len(counts) > _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        record = self.histogram.record_value
        for us, n in self._counts.items():
            record(min(max(us, LOWEST_US), HIGHEST_US), n)
        if self.tap is not None:
            tap = self.tap
            for us, n in self._counts.items():
                tap[us] = tap.get(us, 0) + n
        self._counts = {}

    def encode(self) -> str:
        """The histogram as HdrHistogram's compressed, base64 text (what the phase files hold)."""
        self.flush()
        return self.histogram.encode().decode("ascii")

    def reset(self) -> None:
        self.histogram.reset()
        self._counts = {}


def encode_counts(counts: dict[int, int]) -> str:
    """{whole microseconds: count} as an encoded histogram (what Recorder.encode makes)."""
    histogram = new()
    for us, n in counts.items():
        histogram.record_value(min(max(us, LOWEST_US), HIGHEST_US), n)
    return histogram.encode().decode("ascii")


def merged(encoded: list[str]) -> HdrHistogram | None:
    """One histogram of many encoded ones; None if there are none or one cannot be read."""
    total = new()
    try:
        for text in encoded:
            total.add(HdrHistogram.decode(text.encode("ascii")))
    except Exception:  # hdrh raises bare errors of several kinds for corrupt input
        return None
    return total if encoded else None


def percentile_ms(histogram: HdrHistogram, fraction: float) -> float:
    """The response time at `fraction` (0.5 = median), in ms to 3 significant digits."""
    us = histogram.get_value_at_percentile(fraction * 100.0)
    return float(f"{us / 1000.0:.3g}")
