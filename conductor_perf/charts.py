"""Small, dependency-free SVG charts for Robot logs and run summaries.

Every function returns one self-contained SVG document as a string (no external fonts, styles or
scripts), so it can be written to a file, inlined into an HTML page, or shown in a Robot log with
:func:`svg_img_html` and ``logger.info(html, html=True)``.

Conventions shared by all charts:

- a title at the top; axes carry tick labels and a label with the unit (``"latency (ms)"``);
- the target, when given, is drawn as a dashed line with a text label;
- several series get a legend; colours come from the colour-blind-safe Okabe-Ito palette;
- all text is XML-escaped, so test and metric names may contain ``<``, ``&`` or quotes;
- elements carry classes (``series``, ``target``, ``legend``, ``bar``, ``span``) so tests and
  style sheets can find them; a series' name is in its ``data-series`` attribute.

Example::

    svg = line_chart({"msg/s": [(0, 950), (1, 1020), (2, 1100)]}, "Bus throughput",
                     "time (s)", "throughput (msg/s)", target=1000, target_label="target > 1000 msg/s")
    logger.info(svg_img_html(svg), html=True)
"""

from __future__ import annotations

import base64
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

__all__ = [
    "PALETTE",
    "bar_chart",
    "line_chart",
    "nice_ticks",
    "percentile_curve",
    "percentile_points",
    "ratio_chart",
    "svg_img_html",
    "timeline",
]

#: Okabe-Ito colours (colour-blind safe), in the order series receive them.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#999999")
_TARGET_COLOUR = "#C0392B"
_STATUS_COLOURS = {
    "pass": "#009E73",
    "ok": "#009E73",
    "completed": "#009E73",
    "success": "#009E73",
    "fail": "#D55E00",
    "failed": "#D55E00",
    "error": "#D55E00",
    "invalid": "#CC79A7",
    "skipped": "#999999",
    "running": "#56B4E9",
}
_HALO = ' stroke="#fff" stroke-width="3" paint-order="stroke"'  # readable text over lines
_FONT = "font-family:DejaVu Sans,Arial,Helvetica,sans-serif"
_STANDARD_PERCENTILES = (0.0, 50.0, 90.0, 99.0, 99.9, 99.99, 99.999, 99.9999)

Point = tuple[float, float]


# --------------------------------------------------------------------------------------------------
# small helpers


def rate_series(cumulative: Iterable[Sequence[float]], *, min_fraction: float = 0.5) -> list[list[float]]:
    """Per-interval rates ``[t, rate]`` (at each interval's end) from a cumulative ``(seconds, count)`` series.

    A sampler's last interval is often cut short by the end of the window (0.05 s after the last
    full 0.25 s step), and a counter that writers update in batches reads nearly nothing in it: a
    last interval shorter than ``min_fraction`` of the median interval is left out instead of
    being drawn as a drop.

    Example::

        >>> rate_series([(1.0, 100), (2.0, 250), (2.05, 250)])
        [[1.0, 100.0], [2.0, 150.0]]
    """
    out: list[list[float]] = []
    widths: list[float] = []
    prev_t, prev_n = 0.0, 0.0
    for t, n in cumulative:
        if t > prev_t:
            out.append([round(t, 3), (n - prev_n) / (t - prev_t)])
            widths.append(t - prev_t)
            prev_t, prev_n = t, n
    if len(widths) >= 2 and widths[-1] < min_fraction * statistics.median(widths[:-1]):
        out.pop()
    return out


def _text(s: object) -> str:
    return escape(str(s))


def _attr(s: object) -> str:
    return quoteattr(str(s))


def _f(v: float) -> str:
    """Coordinate formatting: one decimal, no trailing ``.0``."""
    s = f"{v:.1f}"
    return s[:-2] if s.endswith(".0") else s


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 × 10^k) covering ``[lo, hi]``.

    The first and last ticks bound the range, so they double as the axis domain.

    >>> nice_ticks(0, 97)
    [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = mag
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = m * mag
        if step >= raw:
            break
    start = math.floor(lo / step + 1e-9) * step
    end = math.ceil(hi / step - 1e-9) * step
    n = int(round((end - start) / step))
    return [round(start + i * step, 12) + 0.0 for i in range(n + 1)]


def _tick_label(v: float, step: float) -> str:
    av = abs(v)
    if av >= 1e6 and step >= 1e5:
        return f"{v / 1e6:g}M"
    if av >= 1e4 and step >= 1e3:
        return f"{v / 1e3:g}k"
    if step >= 1 or v == 0:
        return f"{v:,.0f}" if float(v).is_integer() else f"{v:g}"
    exp = math.floor(math.log10(step))
    decimals = max(0, -exp + (1 if abs(step / 10**exp - 2.5) < 1e-6 else 0))
    return f"{v:.{decimals}f}"


def _value_label(v: float) -> str:
    av = abs(v)
    if av >= 1e4:
        return f"{v:,.0f}"
    if av >= 100:
        return f"{v:.0f}"
    if av >= 10:
        s = f"{v:.1f}"
        return s[:-2] if s.endswith(".0") else s
    return f"{v:.3g}"


def _downsample(points: list[Point], max_points: int) -> list[Point]:
    """Keep at most ``max_points`` points, preserving each bucket's min and max (spikes survive)."""
    if max_points < 4 or len(points) <= max_points:
        return points
    buckets = max_points // 2
    size = len(points) / buckets
    out: list[Point] = []
    for b in range(buckets):
        chunk = points[int(b * size) : int((b + 1) * size)]
        if not chunk:
            continue
        lo = min(chunk, key=lambda p: p[1])
        hi = max(chunk, key=lambda p: p[1])
        out.extend(sorted({lo, hi}, key=lambda p: p[0]))
    return out


class _Canvas:
    """Accumulates SVG elements for one chart with a rectangular plot area."""

    def __init__(self, width: int, height: int, title: str, left: int, right: int, top: int, bottom: int):
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        self.parts: list[str] = []
        self.title = title

    @property
    def x0(self) -> float:
        return float(self.left)

    @property
    def x1(self) -> float:
        return float(self.width - self.right)

    @property
    def y0(self) -> float:  # bottom of the plot area
        return float(self.height - self.bottom)

    @property
    def y1(self) -> float:  # top of the plot area
        return float(self.top)

    def add(self, s: str) -> None:
        self.parts.append(s)

    def render(self) -> str:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
            f'viewBox="0 0 {self.width} {self.height}" role="img" aria-label={_attr(self.title)} '
            f'style="{_FONT};font-size:12px;background:#fff">'
        )
        body = [
            head,
            f"<title>{_text(self.title)}</title>",
            f'<rect class="background" x="0" y="0" width="{self.width}" height="{self.height}" fill="#fff"/>',
            f'<text class="title" x="{_f(self.width / 2)}" y="20" text-anchor="middle" '
            f'font-size="14" font-weight="bold">{_text(self.title)}</text>',
            *self.parts,
            "</svg>",
        ]
        return "\n".join(body)

    # axes -----------------------------------------------------------------------------------
    def y_axis(self, ticks: Sequence[float], scale, label: str, tick_text=None) -> None:
        step = (ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
        self.add('<g class="y-axis" font-size="11" fill="#333">')
        for t in ticks:
            y = scale(t)
            self.add(
                f'<line class="grid" x1="{_f(self.x0)}" y1="{_f(y)}" x2="{_f(self.x1)}" y2="{_f(y)}" '
                f'stroke="#e5e5e5" stroke-width="1"/>'
            )
            txt = tick_text(t) if tick_text else _tick_label(t, step)
            self.add(f'<text x="{_f(self.x0 - 6)}" y="{_f(y + 4)}" text-anchor="end">{_text(txt)}</text>')
        self.add(
            f'<line x1="{_f(self.x0)}" y1="{_f(self.y0)}" x2="{_f(self.x0)}" y2="{_f(self.y1)}" stroke="#333"/>'
        )
        cy = (self.y0 + self.y1) / 2
        self.add(
            f'<text class="axis-label" x="14" y="{_f(cy)}" text-anchor="middle" '
            f'transform="rotate(-90 14 {_f(cy)})">{_text(label)}</text>'
        )
        self.add("</g>")

    def x_axis(self, ticks: Sequence[float], scale, label: str, tick_text=None, grid: bool = False) -> None:
        step = (ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
        self.add('<g class="x-axis" font-size="11" fill="#333">')
        self.add(
            f'<line x1="{_f(self.x0)}" y1="{_f(self.y0)}" x2="{_f(self.x1)}" y2="{_f(self.y0)}" stroke="#333"/>'
        )
        for t in ticks:
            x = scale(t)
            if grid:
                self.add(
                    f'<line class="grid" x1="{_f(x)}" y1="{_f(self.y0)}" x2="{_f(x)}" y2="{_f(self.y1)}" '
                    f'stroke="#e5e5e5" stroke-width="1"/>'
                )
            self.add(
                f'<line x1="{_f(x)}" y1="{_f(self.y0)}" x2="{_f(x)}" y2="{_f(self.y0 + 4)}" stroke="#333"/>'
            )
            txt = tick_text(t) if tick_text else _tick_label(t, step)
            self.add(f'<text x="{_f(x)}" y="{_f(self.y0 + 17)}" text-anchor="middle">{_text(txt)}</text>')
        self.add(
            f'<text class="axis-label" x="{_f((self.x0 + self.x1) / 2)}" y="{_f(self.height - 8)}" '
            f'text-anchor="middle">{_text(label)}</text>'
        )
        self.add("</g>")

    def legend(self, entries: Sequence[tuple[str, str]], y: float = 36) -> None:
        """One row (wrapping) of colour swatches and names under the title."""
        self.add('<g class="legend" font-size="11" fill="#333">')
        x = self.x0
        for name, colour in entries:
            w = 22 + 6.5 * len(name)
            if x + w > self.x1 and x > self.x0:
                x = self.x0
                y += 15
            self.add(
                f'<rect x="{_f(x)}" y="{_f(y - 8)}" width="14" height="8" fill="{colour}"/>'
                f'<text x="{_f(x + 18)}" y="{_f(y)}">{_text(name)}</text>'
            )
            x += w + 10
        self.add("</g>")

    def h_target(self, y: float, label: str) -> None:
        self.add(
            f'<g class="target"><line class="target" x1="{_f(self.x0)}" y1="{_f(y)}" x2="{_f(self.x1)}" '
            f'y2="{_f(y)}" stroke="{_TARGET_COLOUR}" stroke-width="1.5" stroke-dasharray="6 4"/>'
            f'<text class="target-label" x="{_f(self.x1 - 4)}" y="{_f(y - 4)}" text-anchor="end" '
            f'font-size="11" fill="{_TARGET_COLOUR}"{_HALO}>{_text(label)}</text></g>'
        )

    def v_target(self, x: float, label: str) -> None:
        right = x < self.x1 - 6.5 * len(label) - 8  # label to the right of the line when it fits
        self.add(
            f'<g class="target"><line class="target" x1="{_f(x)}" y1="{_f(self.y0)}" x2="{_f(x)}" '
            f'y2="{_f(self.y1)}" stroke="{_TARGET_COLOUR}" stroke-width="1.5" stroke-dasharray="6 4"/>'
            f'<text class="target-label" x="{_f(x + 4 if right else x - 4)}" y="{_f(self.y1 - 3)}" '
            f'text-anchor="{"start" if right else "end"}" font-size="11" fill="{_TARGET_COLOUR}"{_HALO}>'
            f"{_text(label)}</text></g>"
        )

    def no_data(self) -> None:
        self.add(
            f'<text class="no-data" x="{_f((self.x0 + self.x1) / 2)}" y="{_f((self.y0 + self.y1) / 2)}" '
            f'text-anchor="middle" fill="#999">no data</text>'
        )


def _linear(d0: float, d1: float, r0: float, r1: float):
    span = (d1 - d0) or 1.0
    return lambda v: r0 + (v - d0) * (r1 - r0) / span


def _legend_rows(names: Sequence[str], usable: float) -> int:
    rows, x = 1, 0.0
    for n in names:
        w = 32 + 6.5 * len(n)
        if x + w > usable and x > 0:
            rows += 1
            x = 0.0
        x += w
    return rows


def _target_text(target: float, label: str | None, unit: str = "") -> str:
    if label:
        return label
    return f"target {_value_label(target)}{(' ' + unit) if unit else ''}"


# --------------------------------------------------------------------------------------------------
# line chart


def line_chart(
    series: Mapping[str, Iterable[Sequence[float]]],
    title: str,
    x_label: str,
    y_label: str,
    target: float | None = None,
    target_label: str | None = None,
    *,
    width: int = 640,
    height: int = 300,
    y_from_zero: bool = True,
    markers: bool | None = None,
    max_points: int = 1500,
) -> str:
    """Line chart of one or more series of ``(x, y)`` points.

    Args:
        series: ``{name: [(x, y), ...]}``; points are sorted by x, non-finite points dropped.
        title: chart title.
        x_label: x-axis label with unit, e.g. ``"time (s)"``.
        y_label: y-axis label with unit, e.g. ``"throughput (msg/s)"``.
        target: a y value drawn as a dashed horizontal line (the y range always includes it).
        target_label: text next to the target line (default ``"target <value>"``).
        y_from_zero: start the y axis at 0 when all values are positive (honest bars of scale).
        markers: draw a dot per point; default only when a series has at most 30 points.
        max_points: longer series are reduced per bucket to their min and max (spikes survive).

    Returns:
        The SVG document. Each series is a ``<polyline class="series" data-series="name">``.
    """
    clean: dict[str, list[Point]] = {}
    for name, pts in series.items():
        good = sorted((float(p[0]), float(p[1])) for p in pts if _finite(p[0]) and _finite(p[1]))
        clean[str(name)] = _downsample(good, max_points)
    names = list(clean)
    multi = len(names) > 1
    legend_rows = _legend_rows(names, width - 80) if multi else 0
    c = _Canvas(width, height, title, left=64, right=18, top=36 + 15 * legend_rows, bottom=44)
    all_pts = [p for pts in clean.values() for p in pts]
    if not all_pts:
        c.no_data()
        return c.render()
    xs = [p[0] for p in all_pts]
    ys = [p[1] for p in all_pts]
    if target is not None and _finite(target):
        ys.append(float(target))
    y_lo, y_hi = min(ys), max(ys)
    if y_from_zero and y_lo > 0:
        y_lo = 0.0
    y_ticks = nice_ticks(y_lo, y_hi)
    x_ticks = nice_ticks(min(xs), max(xs), count=6)
    sx = _linear(x_ticks[0], x_ticks[-1], c.x0, c.x1)
    sy = _linear(y_ticks[0], y_ticks[-1], c.y0, c.y1)
    c.y_axis(y_ticks, sy, y_label)
    c.x_axis(x_ticks, sx, x_label)
    if markers is None:
        markers = max(len(p) for p in clean.values()) <= 30
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        pts = clean[name]
        coords = " ".join(f"{_f(sx(x))},{_f(sy(y))}" for x, y in pts)
        c.add(
            f'<g class="series-group"><polyline class="series" data-series={_attr(name)} points="{coords}" '
            f'fill="none" stroke="{colour}" stroke-width="1.8" stroke-linejoin="round"/>'
        )
        if markers or len(pts) == 1:
            for x, y in pts:
                c.add(
                    f'<circle class="marker" cx="{_f(sx(x))}" cy="{_f(sy(y))}" r="2.5" fill="{colour}">'
                    f"<title>{_text(name)}: ({_value_label(x)}, {_value_label(y)})</title></circle>"
                )
        c.add("</g>")
    if target is not None and _finite(target):
        c.h_target(sy(float(target)), _target_text(float(target), target_label))
    if multi:
        c.legend([(n, PALETTE[i % len(PALETTE)]) for i, n in enumerate(names)])
    return c.render()


# --------------------------------------------------------------------------------------------------
# percentile curve


def _parse_percentile_key(key: object) -> float | None:
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return float(key)
    s = str(key).strip().lower()
    if s == "max":
        return 100.0
    if s in ("min",):
        return None
    if s.startswith("p"):
        s = s[1:]
    s = s.replace("_", ".")
    if "." not in s and len(s) > 2 and s.startswith("99") and s.isdigit():
        s = s[:2] + "." + s[2:]  # p999 -> 99.9, p9999 -> 99.99
    try:
        v = float(s)
    except ValueError:
        return None
    return v if 0.0 <= v <= 100.0 else None


def percentile_points(data: Mapping[str, object] | Iterable[Sequence[float]]) -> list[Point]:
    """Normalise a histogram summary or ``(percentile, value)`` pairs to sorted pairs.

    Accepted shapes: ``[(50, 1.2), (99, 4.0)]``; ``{"percentiles": {"50": 1.2, "99.9": 7}, "max": 9}``
    (the results schema's histogram summary); or a flat dict with keys such as ``p50``, ``p99.9``,
    ``p999`` (= 99.9), ``"99"`` and ``max`` (= 100). Other keys (count, mean, …) are ignored.
    """
    pts: dict[float, float] = {}
    if isinstance(data, Mapping):
        nested = data.get("percentiles")
        items: list[tuple[object, object]] = []
        if isinstance(nested, Mapping):
            items.extend(nested.items())
        elif isinstance(nested, (list, tuple)):
            items.extend((p[0], p[1]) for p in nested)
        items.extend((k, v) for k, v in data.items() if k != "percentiles")
        for k, v in items:
            p = _parse_percentile_key(k)
            if p is not None and _finite(v):
                pts[p] = float(v)  # type: ignore[arg-type]
    else:
        for p in data:
            if len(p) >= 2 and _finite(p[0]) and _finite(p[1]) and 0 <= p[0] <= 100:
                pts[float(p[0])] = float(p[1])
    return sorted(pts.items())


def _pct_pos(p: float, max_pos: float) -> float:
    if p >= 100.0:
        return max_pos
    return math.log10(100.0 / (100.0 - p))


def _pct_label(p: float) -> str:
    if p >= 100.0:
        return "max"
    return f"{p:g}"


def percentile_curve(
    data: Mapping[str, object] | Iterable[Sequence[float]],
    title: str,
    target_ms: float | None = None,
    *,
    target_label: str | None = None,
    y_label: str = "latency (ms)",
    series_name: str = "latency",
    width: int = 640,
    height: int = 300,
) -> str:
    """Latency by percentile: x is log-like (50, 90, 99, 99.9 … max equally spaced), y linear.

    Args:
        data: a histogram summary (see :func:`percentile_points`), a list of ``(percentile, ms)``,
            or ``{series name: summary-or-list}`` to compare several curves (e.g. baseline vs now).
        title: chart title.
        target_ms: latency target drawn as a dashed horizontal line.
        target_label: text for the target line (default ``"target <n> ms"``).
        y_label: y-axis label with unit.
        series_name: legend name when ``data`` is a single curve.

    Returns:
        The SVG document; each curve is a ``<polyline class="series">`` with a dot per percentile.
    """
    curves: dict[str, list[Point]]
    if (
        isinstance(data, Mapping)
        and data
        and all(isinstance(v, (Mapping, list, tuple)) for k, v in data.items() if k != "percentiles")
        and "percentiles" not in data
    ):
        curves = {str(k): percentile_points(v) for k, v in data.items()}  # type: ignore[arg-type]
    else:
        curves = {series_name: percentile_points(data)}
    names = list(curves)
    multi = len(names) > 1
    legend_rows = _legend_rows(names, width - 80) if multi else 0
    c = _Canvas(width, height, title, left=64, right=18, top=36 + 15 * legend_rows, bottom=44)
    all_pts = [p for pts in curves.values() for p in pts]
    if not all_pts:
        c.no_data()
        return c.render()
    finite_max = max((p for p, _ in all_pts if p < 100.0), default=99.0)
    top_std = next((q for q in _STANDARD_PERCENTILES if q >= finite_max), finite_max)
    max_pos = _pct_pos(top_std, 0) + (0.6 if any(p >= 100.0 for p, _ in all_pts) else 0.0)
    x_ticks = [q for q in _STANDARD_PERCENTILES if q <= top_std]
    if any(p >= 100.0 for p, _ in all_pts):
        x_ticks.append(100.0)
    lo_pos = min(_pct_pos(p, max_pos) for p, _ in all_pts)
    lo_pos = min(lo_pos, _pct_pos(50.0, max_pos)) if lo_pos > 0 else lo_pos
    x_ticks = [q for q in x_ticks if _pct_pos(q, max_pos) >= lo_pos - 1e-9]
    ys = [v for _, v in all_pts]
    if target_ms is not None and _finite(target_ms):
        ys.append(float(target_ms))
    y_ticks = nice_ticks(min(0.0, min(ys)), max(ys))
    span_pos = max_pos - lo_pos or 1.0
    sx = lambda p: c.x0 + (_pct_pos(p, max_pos) - lo_pos) * (c.x1 - c.x0) / span_pos  # noqa: E731
    sy = _linear(y_ticks[0], y_ticks[-1], c.y0, c.y1)
    c.y_axis(y_ticks, sy, y_label)
    c.x_axis(x_ticks, sx, "percentile", tick_text=_pct_label, grid=True)
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        pts = curves[name]
        coords = " ".join(f"{_f(sx(p))},{_f(sy(v))}" for p, v in pts)
        c.add(
            f'<g class="series-group"><polyline class="series" data-series={_attr(name)} points="{coords}" '
            f'fill="none" stroke="{colour}" stroke-width="1.8" stroke-linejoin="round"/>'
        )
        for p, v in pts:
            c.add(
                f'<circle class="marker" cx="{_f(sx(p))}" cy="{_f(sy(v))}" r="3" fill="{colour}">'
                f"<title>{_text(name)} p{_pct_label(p)}: {_value_label(v)}</title></circle>"
            )
        c.add("</g>")
    if target_ms is not None and _finite(target_ms):
        c.h_target(sy(float(target_ms)), _target_text(float(target_ms), target_label, "ms"))
    if multi:
        c.legend([(n, PALETTE[i % len(PALETTE)]) for i, n in enumerate(names)])
    return c.render()


# --------------------------------------------------------------------------------------------------
# bar chart (horizontal)


def _log_ticks(lo: float, hi: float) -> list[float]:
    lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks = []
    for e in range(lo_e, hi_e + 1):
        for m in (1, 2, 5) if hi_e - lo_e <= 3 else (1,):
            v = m * 10.0**e
            if 10.0**lo_e <= v <= 10.0**hi_e:
                ticks.append(v)
    return ticks


def bar_chart(
    bars: Mapping[str, float] | Sequence[tuple[str, float]],
    title: str,
    value_label: str,
    target: float | None = None,
    target_label: str | None = None,
    *,
    statuses: Mapping[str, str] | None = None,
    log: bool = False,
    width: int = 640,
    bar_height: int = 18,
) -> str:
    """Horizontal bar chart, one labelled bar per entry (long test names fit on the left).

    Typical use: headroom per target (figure ÷ target, oriented so that > 1 passes) with
    ``target=1`` drawn as a dashed vertical line.

    Args:
        bars: ``{label: value}`` or ``[(label, value), ...]`` in display order.
        title: chart title.
        value_label: value-axis label with unit.
        target: value drawn as a dashed vertical line.
        target_label: text for the target line.
        statuses: optional ``{label: verdict}``; bars are coloured by verdict (pass, fail, …).
        log: logarithmic value axis (all values must be > 0; others are drawn at the axis start).
        width: SVG width; the height grows with the number of bars.

    Returns:
        The SVG document; each bar is a ``<rect class="bar" data-label="…">``.
    """
    items = list(bars.items()) if isinstance(bars, Mapping) else [(str(k), v) for k, v in bars]
    items = [(str(k), float(v)) for k, v in items if _finite(v)]
    longest = max((len(k) for k, _ in items), default=8)
    shown = min(longest, 42)
    left = int(min(max(70, 12 + 6.6 * shown), width * 0.5))
    seen = [s for s in dict.fromkeys((statuses or {}).get(k, "") for k, _ in items) if s]
    legend = len(seen) > 1
    top = 36 + (15 if legend else 0)
    height = top + 44 + max(1, len(items)) * (bar_height + 6) + 8
    c = _Canvas(width, height, title, left=left, right=60, top=top, bottom=44)
    if not items:
        c.no_data()
        return c.render()
    vals = [v for _, v in items]
    if target is not None and _finite(target):
        vals.append(float(target))
    if log:
        pos = [v for v in vals if v > 0] or [1.0]
        ticks = _log_ticks(min(pos), max(pos))
        lo_l, hi_l = math.log10(ticks[0]), math.log10(ticks[-1])
        span = (hi_l - lo_l) or 1.0
        sx = lambda v: c.x0 + ((math.log10(v) if v > 0 else lo_l) - lo_l) * (c.x1 - c.x0) / span  # noqa: E731
        base = ticks[0]
        c.x_axis(ticks, sx, value_label, tick_text=lambda t: f"{t:g}", grid=True)
    else:
        ticks = nice_ticks(min(0.0, min(vals)), max(0.0, max(vals)))
        sx = _linear(ticks[0], ticks[-1], c.x0, c.x1)
        base = 0.0
        c.x_axis(ticks, sx, value_label, grid=True)
    c.add('<g class="bars" font-size="11" fill="#333">')
    for i, (label, v) in enumerate(items):
        y = c.y1 + 4 + i * (bar_height + 6)
        status = (statuses or {}).get(label, "")
        colour = _STATUS_COLOURS.get(status.lower(), PALETTE[0]) if status else PALETTE[0]
        xa, xb = sx(base), sx(v)
        x, w = min(xa, xb), abs(xb - xa)
        short = label if len(label) <= shown else label[: shown - 1] + "…"
        c.add(
            f'<text x="{_f(c.x0 - 6)}" y="{_f(y + bar_height / 2 + 4)}" text-anchor="end">{_text(short)}</text>'
            f'<rect class="bar" data-label={_attr(label)} x="{_f(x)}" y="{_f(y)}" width="{_f(max(w, 0.5))}" '
            f'height="{bar_height}" fill="{colour}"><title>{_text(label)}: {_value_label(v)}'
            f"{(' (' + _text(status) + ')') if status else ''}</title></rect>"
            f'<text x="{_f(max(xa, xb) + 4)}" y="{_f(y + bar_height / 2 + 4)}">{_value_label(v)}</text>'
        )
    c.add("</g>")
    if target is not None and _finite(target):
        c.v_target(sx(float(target)), _target_text(float(target), target_label))
    if legend:
        c.legend([(s, _STATUS_COLOURS.get(s.lower(), PALETTE[0])) for s in seen])
    return c.render()


# --------------------------------------------------------------------------------------------------
# timeline


def timeline(
    spans: Iterable[Sequence[object] | Mapping[str, object]],
    title: str,
    x_label: str = "time (s)",
    target: float | None = None,
    target_label: str | None = None,
    *,
    width: int = 640,
    row_height: int | None = None,
) -> str:
    """Horizontal bars from start to end, one row per span (e.g. agent runs from start to finish).

    Args:
        spans: ``(label, start, end)`` or ``(label, start, end, status)`` tuples, or dicts with
            those keys. ``end=None`` (still running) is drawn to the latest end seen.
        title: chart title.
        x_label: time-axis label with unit.
        target: a deadline on the time axis, drawn as a dashed vertical line.
        target_label: text for the deadline.
        row_height: pixels per row; default shrinks from 16 to 6 as rows grow.

    Returns:
        The SVG document; each span is a ``<rect class="span" data-label="…">``.
    """
    rows: list[tuple[str, float, float | None, str]] = []
    for s in spans:
        if isinstance(s, Mapping):
            label, start, end, status = s.get("label", ""), s.get("start"), s.get("end"), s.get("status", "")
        else:
            seq = list(s)
            label, start, end = seq[0], seq[1], seq[2] if len(seq) > 2 else None
            status = seq[3] if len(seq) > 3 else ""
        if not _finite(start):
            continue
        rows.append((str(label), float(start), float(end) if _finite(end) else None, str(status or "")))  # type: ignore[arg-type]
    n = len(rows)
    rh = row_height or (16 if n <= 20 else 10 if n <= 50 else 6)
    label_every = 1 if rh >= 10 else max(1, math.ceil(12 / rh))
    longest = min(max((len(r[0]) for r in rows), default=6), 30)
    left = int(min(max(60, 12 + 6.6 * longest), width * 0.4))
    statuses = [s for s in dict.fromkeys(r[3] for r in rows) if s]
    legend = len(statuses) > 1
    top = 36 + (15 if legend else 0)
    height = top + 44 + max(1, n) * (rh + 2) + 8
    c = _Canvas(width, height, title, left=left, right=24, top=top, bottom=44)
    if not rows:
        c.no_data()
        return c.render()
    ends = [r[2] for r in rows if r[2] is not None] + [r[1] for r in rows]
    hi = max(ends)
    vals = [r[1] for r in rows] + [hi]
    if target is not None and _finite(target):
        vals.append(float(target))
    ticks = nice_ticks(min(0.0, min(vals)), max(vals), count=6)
    sx = _linear(ticks[0], ticks[-1], c.x0, c.x1)
    c.x_axis(ticks, sx, x_label, grid=True)
    c.add('<g class="spans" font-size="10" fill="#333">')
    for i, (label, start, end, status) in enumerate(rows):
        y = c.y1 + 4 + i * (rh + 2)
        colour = _STATUS_COLOURS.get(status.lower(), PALETTE[0]) if status else PALETTE[0]
        stop = end if end is not None else hi
        x, w = sx(start), max(sx(stop) - sx(start), 1.0)
        if i % label_every == 0:
            short = label if len(label) <= longest else label[: longest - 1] + "…"
            c.add(
                f'<text x="{_f(c.x0 - 6)}" y="{_f(y + rh / 2 + 3.5)}" text-anchor="end">{_text(short)}</text>'
            )
        dur = f"{_value_label(stop - start)}" + ("" if end is not None else "+ (unfinished)")
        faded = "" if end is not None else ' fill-opacity="0.5"'
        c.add(
            f'<rect class="span" data-label={_attr(label)} x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" '
            f'height="{rh}" fill="{colour}"{faded}>'
            f"<title>{_text(label)}: {_value_label(start)} → {_value_label(stop)} ({dur})"
            f"{(' ' + _text(status)) if status else ''}</title></rect>"
        )
    c.add("</g>")
    if target is not None and _finite(target):
        c.v_target(sx(float(target)), _target_text(float(target), target_label))
    if legend:
        c.legend([(s, _STATUS_COLOURS.get(s.lower(), PALETTE[0])) for s in statuses])
    return c.render()


# --------------------------------------------------------------------------------------------------
# embedding


def svg_img_html(svg: str, *, alt: str | None = None, inline: bool = False, max_width: str = "100%") -> str:
    """HTML that shows an SVG chart, for ``logger.info(html, html=True)`` or a summary page.

    By default an ``<img>`` with a base64 ``data:`` URI: self-contained, and isolated from the
    page's CSS and ids. ``inline=True`` returns the SVG markup itself (searchable text).
    """
    if inline:
        return f'<div class="chart" style="max-width:{escape(max_width)}">{svg}</div>'
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    label = alt if alt is not None else _svg_title(svg)
    return f'<img src="data:image/svg+xml;base64,{data}" alt={_attr(label)} style="max-width:{escape(max_width)}">'


def _svg_title(svg: str) -> str:
    start = svg.find("<title>")
    end = svg.find("</title>", start)
    if start < 0 or end < 0:
        return "chart"
    from xml.sax.saxutils import unescape

    return unescape(svg[start + 7 : end])


# --------------------------------------------------------------------------------------------------
# ratios with intervals (A/B comparison)

_RATIO_COLOURS = {
    "slower": "#D55E00",
    "worse": "#D55E00",
    "faster": "#009E73",
    "better": "#009E73",
    "no detectable change": "#0072B2",
}
_RATIO_TICKS = (0.1, 0.2, 0.5, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 2.0, 5.0, 10.0)


def _ratio_text(v: object) -> str:
    f = float(v)  # type: ignore[arg-type]
    return f"{f:.3f}" if f < 10 else f"{f:.3g}"


def ratio_chart(rows: Sequence[Mapping[str, object]], title: str, *, width: int = 820, row_height: int = 20) -> str:
    """One row per figure: the ratio B/A as a dot, its interval as a bar, around a dashed line at 1.0.

    ``rows`` are ``{"label", "ratio", "low", "high", "verdict"}`` in display order (``low``/``high``
    ``None`` when the figure has no interval, ``ratio`` ``None`` when it has no ratio). The value axis
    is logarithmic, so B twice as high and half as high lie equally far from 1.0; intervals beyond
    the axis (0.1 to 10) end in an arrow. Dots and bars are coloured by verdict (slower/worse,
    faster/better, no detectable change); the ratio and interval are written at the right.

    Returns the SVG document; each row is a ``<g class="ratio" data-label="…" data-verdict="…">``.
    """
    items = [dict(r) for r in rows]
    values = [float(v) for r in items for v in (r.get("ratio"), r.get("low"), r.get("high"))
              if _finite(v) and float(v) > 0]  # fmt: skip
    reach = max([abs(math.log(v)) for v in values] + [math.log(1.1)])
    reach = min(reach * 1.08, math.log(10.0))
    lo_l, hi_l = -reach, reach
    longest = max((len(str(r.get("label", ""))) for r in items), default=8)
    shown = min(longest, 60)
    left = int(min(max(90, 12 + 6.2 * shown), width * 0.5))
    seen = [v for v in dict.fromkeys(str(r.get("verdict", "")) for r in items) if v]
    top = 64  # title, legend, then the label of the 1.0 line
    height = top + 44 + max(1, len(items)) * (row_height + 4) + 8
    c = _Canvas(width, height, title, left=left, right=150, top=top, bottom=44)
    if not items:
        c.no_data()
        return c.render()

    def sx(v: float) -> float:
        lv = min(max(math.log(v), lo_l), hi_l)
        return c.x0 + (lv - lo_l) * (c.x1 - c.x0) / (hi_l - lo_l)

    ticks: list[float] = []
    for t in sorted(_RATIO_TICKS, key=lambda t: (abs(math.log(t)), t)):  # 1.0 first, then outwards
        if lo_l - 1e-9 <= math.log(t) <= hi_l + 1e-9 and all(abs(sx(t) - sx(u)) >= 34 for u in ticks):
            ticks.append(t)
    ticks.sort()
    c.x_axis(ticks, sx, "B / A (log scale): below 1.0 B's figure is lower, above it higher",
             tick_text=lambda t: f"{t:g}", grid=True)  # fmt: skip
    c.add('<g class="ratios" font-size="11" fill="#333">')
    for i, r in enumerate(items):
        label = str(r.get("label", ""))
        verdict = str(r.get("verdict", ""))
        colour = _RATIO_COLOURS.get(verdict, "#999999")
        y = c.y1 + 4 + i * (row_height + 4) + row_height / 2
        short = label if len(label) <= shown else label[: shown - 1] + "…"
        ratio, low, high = (r.get(k) for k in ("ratio", "low", "high"))
        parts = [f'<g class="ratio" data-label={_attr(label)} data-verdict={_attr(verdict)}>',
                 f'<text x="{_f(c.x0 - 10)}" y="{_f(y + 4)}" text-anchor="end">{_text(short)}</text>']  # fmt: skip
        if _finite(low) and _finite(high) and float(low) > 0 and float(high) > 0:
            xa, xb = sx(float(low)), sx(float(high))
            parts.append(f'<line class="interval" x1="{_f(xa)}" y1="{_f(y)}" x2="{_f(xb)}" y2="{_f(y)}" '
                         f'stroke="{colour}" stroke-width="4" stroke-linecap="round" opacity="0.55"/>')  # fmt: skip
            for end, x, beyond in ((float(low), xa, math.log(float(low)) < lo_l), (float(high), xb,
                                   math.log(float(high)) > hi_l)):  # fmt: skip
                if beyond:
                    d = -6 if end < 1 else 6
                    parts.append(f'<path class="beyond" d="M{_f(x + d)},{_f(y)} L{_f(x)},{_f(y - 4)} '
                                 f'L{_f(x)},{_f(y + 4)} Z" fill="{colour}"/>')  # fmt: skip
            text = f"{_ratio_text(ratio)} [{_ratio_text(low)}, {_ratio_text(high)}]" if _finite(ratio) else ""
        else:
            text = f"{_ratio_text(ratio)}, no interval" if _finite(ratio) else "no ratio"
        if _finite(ratio) and float(ratio) > 0:
            tip = f"{label}: {text} ({verdict})" if verdict else f"{label}: {text}"
            parts.append(f'<circle class="point" cx="{_f(sx(float(ratio)))}" cy="{_f(y)}" r="4" fill="{colour}">'
                         f"<title>{_text(tip)}</title></circle>")  # fmt: skip
        parts.append(f'<text class="value" x="{_f(c.x1 + 8)}" y="{_f(y + 4)}">{_text(text)}</text></g>')
        c.add("".join(parts))
    c.add("</g>")
    c.v_target(sx(1.0), "1.0: no change")
    if seen:
        c.legend([(v, _RATIO_COLOURS.get(v, "#999999")) for v in seen])
    return c.render()
