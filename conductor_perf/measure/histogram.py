"""Latency histograms: a thin wrapper over ``hdrh.histogram.HdrHistogram``.

Every latency in this project is recorded here, in microseconds, from 1 us to 60 s with 3
significant digits (a value is known to within 0.1 %). Percentiles are read from the histogram,
never computed from rounded buckets or averaged: histograms recorded in several processes are
merged exactly by adding their counts (:meth:`LatencyHistogram.merge`, usually after
:meth:`LatencyHistogram.encode` / :meth:`LatencyHistogram.decode` across a process boundary).

Example::

    h = LatencyHistogram()
    h.record_s(0.0042)          # 4.2 ms
    h.summary()["p99"]          # milliseconds, float
    other = LatencyHistogram.decode(text_from_another_process)
    h.merge(other)
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
"""Lowest trackable latency, microseconds."""
HIGHEST_US = 60_000_000
"""Highest trackable latency, microseconds (60 s); longer latencies are recorded as 60 s."""
SIGNIFICANT_DIGITS = 3
"""Value precision of the latency histograms."""

PENDING_MAX = 16384
"""Distinct values buffered before they are added to the histogram."""
SUMMARY_PERCENTILES: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}
"""Keys of :meth:`LatencyHistogram.summary` that are percentiles, with their percentile."""


class LatencyHistogram:
    """An HDR histogram of latencies in microseconds, read in milliseconds.

    Args:
        significant_digits: value precision, 3 by default (2 is used for small per-second
            timeline buckets, where 1 % is plenty and memory matters).
    """

    __slots__ = ("_hdr", "_pending", "clamped")

    def __init__(self, significant_digits: int = SIGNIFICANT_DIGITS, *, _hdr: HdrHistogram | None = None):
        self._hdr = _hdr if _hdr is not None else HdrHistogram(LOWEST_US, HIGHEST_US, significant_digits)
        # values recorded since the last read, as {microseconds: count}: recording into HdrHistogram
        # costs ~5 us of Python per value, a dict update ~0.1 us, and a load generator records two
        # values per request; every read adds them to the histogram first (the same counts)
        self._pending: dict[int, int] = {}
        #: how many recorded values were outside 0 .. 60 s and clamped into it (not kept across encode)
        self.clamped = 0

    @property
    def _h(self) -> HdrHistogram:
        """The histogram with every recorded value in it."""
        pending = self._pending
        if pending:
            record = self._hdr.record_value
            for v, n in pending.items():
                record(v, n)
            pending.clear()
        return self._hdr

    # -- recording ---------------------------------------------------------------------------
    def record_us(self, us: float, count: int = 1) -> None:
        """Record a latency given in microseconds (clamped into 0 .. 60 s)."""
        v = int(us + 0.5)
        if v > HIGHEST_US:
            v = HIGHEST_US
            self.clamped += count
        elif v < 0:
            v = 0
            self.clamped += count
        pending = self._pending
        pending[v] = pending.get(v, 0) + count
        if len(pending) > PENDING_MAX:
            self._h  # noqa: B018 - adds the pending values, bounding the buffer's memory

    def record_s(self, seconds: float, count: int = 1) -> None:
        """Record a latency given in seconds (clamped into 0 .. 60 s)."""
        self.record_us(seconds * 1_000_000.0, count)

    def record_ms(self, ms: float, count: int = 1) -> None:
        """Record a latency given in milliseconds (clamped into 0 .. 60 s)."""
        self.record_us(ms * 1000.0, count)

    # -- reading -----------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Number of recorded values."""
        return int(self._h.get_total_count())

    def __len__(self) -> int:
        return self.count

    def percentile_us(self, q: float) -> int:
        """The value at percentile ``q`` (0..100), microseconds; 0 when empty."""
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile must be within 0..100, got {q}")
        if self.count == 0:
            return 0
        return min(int(self._h.get_value_at_percentile(q)), self.max_us)

    def percentile_ms(self, q: float) -> float:
        """The value at percentile ``q`` (0..100), milliseconds; 0.0 when empty."""
        return self.percentile_us(q) / 1000.0

    @property
    def min_us(self) -> int:
        """Smallest recorded value (lowest equivalent), microseconds; 0 when empty."""
        return int(self._h.get_min_value()) if self.count else 0

    @property
    def max_us(self) -> int:
        """Largest recorded value (highest equivalent), microseconds; 0 when empty."""
        return int(self._h.get_max_value()) if self.count else 0

    @property
    def mean_us(self) -> float:
        """Mean of the recorded values, microseconds; 0.0 when empty."""
        return float(self._h.get_mean_value()) if self.count else 0.0

    def summary(self) -> dict[str, float | int | None]:
        """Count and latency figures in milliseconds.

        Returns:
            ``{"count", "min", "p50", "p90", "p95", "p99", "p99.9", "max", "mean"}``; latency
            values are floats in ms, or ``None`` when nothing was recorded (so an empty run can
            never pass a latency threshold by reading as 0 ms).
        """
        n = self.count
        out: dict[str, float | int | None] = {"count": n}
        if n == 0:
            out.update({k: None for k in ("min", *SUMMARY_PERCENTILES, "max", "mean")})
            return out
        max_us = self.max_us
        values = self._h.get_percentile_to_value_dict(list(SUMMARY_PERCENTILES.values()))
        out["min"] = self.min_us / 1000.0
        for key, q in SUMMARY_PERCENTILES.items():
            out[key] = min(int(values[q]), max_us) / 1000.0
        out["max"] = max_us / 1000.0
        out["mean"] = round(self.mean_us / 1000.0, 6)
        return out

    def percentiles_ms(self, qs: list[float]) -> dict[float, float]:
        """Several percentiles in one pass: ``{q: ms}`` (0.0 each when empty)."""
        if self.count == 0:
            return {q: 0.0 for q in qs}
        max_us = self.max_us
        values = self._h.get_percentile_to_value_dict(list(qs))
        return {q: min(int(values[q]), max_us) / 1000.0 for q in qs}

    # -- combining and transport -------------------------------------------------------------
    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add all counts of ``other`` into this histogram (exact); returns ``self``."""
        self._h.add(other._h)
        self.clamped += other.clamped
        return self

    def copy(self) -> LatencyHistogram:
        """An independent copy."""
        c = LatencyHistogram(self._h.significant_figures)
        c.merge(self)
        return c

    def encode(self) -> str:
        """The histogram as compressed base64 text (HdrHistogram's standard V2 encoding)."""
        return self._h.encode().decode("ascii")

    @classmethod
    def decode(cls, text: str | bytes) -> LatencyHistogram:
        """Rebuild a histogram from :meth:`encode` output (any process, any machine)."""
        raw = text.encode("ascii") if isinstance(text, str) else text
        return cls(_hdr=HdrHistogram.decode(raw))

    def __reduce__(self) -> tuple:
        # pickled as its encoding, so results cross process boundaries (multiprocessing queues)
        return (_rebuild, (self.encode(), self.clamped))

    @property
    def hdr(self) -> HdrHistogram:
        """The underlying ``HdrHistogram`` (for iteration or export)."""
        return self._h

    def __repr__(self) -> str:
        if not self.count:
            return "LatencyHistogram(count=0)"
        s = self.summary()
        return (
            f"LatencyHistogram(count={s['count']}, p50={s['p50']} ms, p99={s['p99']} ms, max={s['max']} ms)"
        )


def _rebuild(text: str, clamped: int) -> LatencyHistogram:
    h = LatencyHistogram.decode(text)
    h.clamped = clamped
    return h
