"""LatencyHistogram: percentiles on known distributions, transport, exact merge across processes."""

from __future__ import annotations

import multiprocessing
import pickle
import random

import pytest

from conductor_perf.measure.histogram import HIGHEST_US, LatencyHistogram

# 3 significant digits: any value is known to within 0.1 % (HDR bucket width), plus one step of
# percentile rank on the sample itself.
REL = 0.002


def uniform_1_to_1000_ms() -> LatencyHistogram:
    h = LatencyHistogram()
    for ms in range(1, 1001):
        h.record_ms(ms)
    return h


def test_uniform_distribution_percentiles_within_hdr_precision():
    s = uniform_1_to_1000_ms().summary()
    assert s["count"] == 1000
    for key, expected in (("p50", 500), ("p90", 900), ("p95", 950), ("p99", 990), ("p99.9", 999)):
        assert s[key] == pytest.approx(expected, rel=REL), key
    assert s["min"] == pytest.approx(1.0, rel=REL)
    assert s["max"] == pytest.approx(1000.0, rel=REL)
    assert s["mean"] == pytest.approx(500.5, rel=REL)


def test_summary_values_are_ordered_floats_in_ms():
    rng = random.Random(7)
    h = LatencyHistogram()
    for _ in range(20_000):
        h.record_s(rng.expovariate(1 / 0.004))  # exponential, mean 4 ms
    s = h.summary()
    order = [s[k] for k in ("min", "p50", "p90", "p95", "p99", "p99.9", "max")]
    assert order == sorted(order)
    assert all(isinstance(v, float) for v in order)
    # exponential distribution: p50 = ln 2 * mean, p99 = ln 100 * mean (sampling noise ~5 %)
    assert s["p50"] == pytest.approx(0.6931 * 4.0, rel=0.05)
    assert s["p99"] == pytest.approx(4.6052 * 4.0, rel=0.1)
    assert s["mean"] == pytest.approx(4.0, rel=0.05)


def test_units_agree_and_percentile_ms_matches_summary():
    a, b, c = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for v in (0.000250, 0.0015, 0.042, 1.5):
        a.record_s(v)
        b.record_ms(v * 1000)
        c.record_us(v * 1_000_000)
    assert a.summary() == b.summary() == c.summary()
    assert a.percentile_ms(50) == a.summary()["p50"]
    assert a.percentile_ms(100) == a.summary()["max"]
    with pytest.raises(ValueError):
        a.percentile_ms(101)


def test_empty_histogram_reports_none_not_zero():
    s = LatencyHistogram().summary()
    assert s["count"] == 0
    assert all(s[k] is None for k in ("min", "p50", "p99", "max", "mean"))
    assert LatencyHistogram().percentile_ms(99) == 0.0


def test_out_of_range_values_are_clamped_and_counted():
    h = LatencyHistogram()
    h.record_s(120.0)  # beyond 60 s
    h.record_us(-5)
    assert h.count == 2
    assert h.clamped == 2
    assert h.max_us >= HIGHEST_US
    assert h.min_us == 0


def test_encode_decode_roundtrip_and_pickle():
    h = uniform_1_to_1000_ms()
    text = h.encode()
    assert isinstance(text, str) and text.isascii()
    d = LatencyHistogram.decode(text)
    assert d.summary() == h.summary()
    p = pickle.loads(pickle.dumps(h))
    assert p.summary() == h.summary()


def test_merge_equals_recording_everything_in_one():
    rng = random.Random(1)
    values = [rng.lognormvariate(7, 1.2) for _ in range(30_000)]  # microseconds
    whole = LatencyHistogram()
    parts = [LatencyHistogram() for _ in range(3)]
    for i, v in enumerate(values):
        whole.record_us(v)
        parts[i % 3].record_us(v)
    merged = LatencyHistogram()
    for p in parts:
        merged.merge(LatencyHistogram.decode(p.encode()))
    assert merged.summary() == whole.summary()
    assert merged.count == len(values)


def _record_in_child(seed: int) -> str:
    """Runs in a worker process: record a deterministic sample, return its encoding."""
    rng = random.Random(seed)
    h = LatencyHistogram()
    for _ in range(10_000):
        h.record_us(rng.lognormvariate(6 + seed % 3, 1.0))
    return h.encode()


def test_exact_merge_of_histograms_encoded_in_several_processes():
    seeds = [11, 12, 13, 14]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes=2) as pool:
        encoded = pool.map(_record_in_child, seeds, chunksize=1)
    merged = LatencyHistogram()
    for text in encoded:
        merged.merge(LatencyHistogram.decode(text))
    # the same samples recorded in this process
    expected = LatencyHistogram()
    for seed in seeds:
        expected.merge(LatencyHistogram.decode(_record_in_child(seed)))
    assert merged.count == 40_000
    assert merged.summary() == expected.summary()
    got = {(v.value_iterated_to, v.count_at_value_iterated_to) for v in merged.hdr.get_recorded_iterator()}
    want = {(v.value_iterated_to, v.count_at_value_iterated_to) for v in expected.hdr.get_recorded_iterator()}
    assert got == want  # bucket by bucket, not just the headline figures


def test_averaging_percentiles_would_be_wrong_merge_is_not():
    # a fast process and a slow one: the p99 of the union is not the mean of the two p99s
    fast, slow = LatencyHistogram(), LatencyHistogram()
    for _ in range(990):
        fast.record_ms(1)
    for _ in range(10):
        slow.record_ms(100)
    merged = fast.copy().merge(slow)
    assert merged.count == 1000
    assert merged.percentile_ms(99) == pytest.approx(1.0, rel=REL)
    assert merged.percentile_ms(99.9) == pytest.approx(100.0, rel=REL)
    assert merged.percentile_ms(99) != pytest.approx((fast.percentile_ms(99) + slow.percentile_ms(99)) / 2)


def test_several_percentiles_in_one_pass():
    h = uniform_1_to_1000_ms()
    got = h.percentiles_ms([50, 75, 90, 99])
    assert got[75] == pytest.approx(750, rel=REL)
    assert list(got) == [50, 75, 90, 99]


def test_buffered_recording_gives_exactly_the_histogram_of_direct_recording():
    from hdrh.histogram import HdrHistogram

    from conductor_perf.measure import histogram as hmod

    direct = HdrHistogram(hmod.LOWEST_US, hmod.HIGHEST_US, hmod.SIGNIFICANT_DIGITS)
    h = LatencyHistogram()
    values = [(i * 7919) % (3 * hmod.PENDING_MAX) + 1 for i in range(5 * hmod.PENDING_MAX)]  # many distinct values
    for v in values:
        h.record_us(v)
        direct.record_value(v)
    h.record_us(0.4)  # rounds to 0
    direct.record_value(0)
    assert h.count == direct.get_total_count() == len(values) + 1
    assert h.encode() == direct.encode().decode("ascii")
    h.record_us(5)  # recorded after a read: still counted
    assert h.count == len(values) + 2
    other = LatencyHistogram()
    other.record_us(5)
    merged = LatencyHistogram().merge(h).merge(other)  # merge reads both buffers
    assert merged.count == len(values) + 3
