"""Server-side SVG charts: no JavaScript and no network, so the dashboard renders offline and a
test can count what was drawn. Values stay integers (token units) in `data-value`; only labels
are converted for people.

Every mark carries a class a test can count: `bar`, `range`, `point`, `point fail`.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from django.utils.safestring import SafeString, mark_safe

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
FAIL = "#D55E00"
FONT = 'font-family="system-ui, sans-serif" font-size="12" fill="#333"'
# Above this many points a series is drawn as a line only: thousands of circles make the page
# heavy and hide the line anyway.
MAX_MARKERS = 100


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f} %"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """0 and round steps up to at least `top` (1, 2, 2.5 or 5 times a power of ten)."""
    if top <= 0:
        return [0, 1]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _empty(message: str, width: int, height: int) -> SafeString:
    return mark_safe(
        f'<svg class="chart empty" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#fafafa" '
        f'stroke="#ddd"/><text x="{width / 2}" y="{height / 2}" text-anchor="middle" {FONT}>'
        f"{escape(message)}</text></svg>"
    )


@dataclass
class Bar:
    label: str
    value: float
    low: float | None = None
    high: float | None = None
    note: str = ""


def hbar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    axis_label: str,
    fmt: Callable[[float], str],
    empty: str,
    top: float | None = None,
    color: str = PALETTE[0],
    width: int = 640,
) -> SafeString:
    """Horizontal bars (labels can be long model names), with an optional low–high whisker."""
    if not bars:
        return _empty(empty, width, 120)
    left, right, row, head, foot = 170, 110, 28, 30, 46
    height = head + row * len(bars) + foot
    plot_w = width - left - right
    top = top or max(max(b.value, b.high or 0) for b in bars)
    ticks = nice_ticks(top)
    scale = plot_w / ticks[-1]
    out = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} '
        f'{height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    base = head + row * len(bars)
    for t in ticks:
        x = left + t * scale
        out.append(
            f'<line x1="{x:.1f}" y1="{head - 4}" x2="{x:.1f}" y2="{base}" stroke="#e5e5e5"/>'
            f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle" {FONT}>'
            f"{escape(fmt(t))}</text>"
        )
    out.append(
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle" {FONT}>'
        f"{escape(axis_label)}</text>"
    )
    for i, bar in enumerate(bars):
        y = head + i * row
        w = max(bar.value * scale, 1)
        out.append(
            f'<text x="{left - 8}" y="{y + row / 2 + 4}" text-anchor="end" {FONT}>'
            f"{escape(bar.label)}</text>"
            f'<rect class="bar" data-value="{bar.value}" x="{left}" y="{y + 5}" width="{w:.1f}" '
            f'height="{row - 10}" fill="{color}"><title>{escape(bar.label)}: '
            f"{escape(fmt(bar.value))}</title></rect>"
        )
        if bar.low is not None and bar.high is not None:
            x1, x2, ym = left + bar.low * scale, left + bar.high * scale, y + row / 2
            out.append(
                f'<g class="range" data-low="{bar.low}" data-high="{bar.high}" stroke="#222" '
                f'stroke-width="1.5"><line x1="{x1:.1f}" y1="{ym}" x2="{x2:.1f}" y2="{ym}"/>'
                f'<line x1="{x1:.1f}" y1="{ym - 6}" x2="{x1:.1f}" y2="{ym + 6}"/>'
                f'<line x1="{x2:.1f}" y1="{ym - 6}" x2="{x2:.1f}" y2="{ym + 6}"/></g>'
            )
        end = left + max(w, (bar.high or 0) * scale)
        out.append(
            f'<text x="{end + 6:.1f}" y="{y + row / 2 + 4}" {FONT}>'
            f"{escape(bar.note or fmt(bar.value))}</text>"
        )
    out.append(f'<line x1="{left}" y1="{head - 4}" x2="{left}" y2="{base}" stroke="#888"/></svg>')
    return mark_safe("".join(out))


@dataclass
class Series:
    name: str
    points: list[tuple[datetime, float]] = field(default_factory=list)
    # Per point: False draws a fail mark instead of a dot (e.g. a rejected job).
    passed: list[bool] | None = None
    line: bool = True


def time_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_label: str,
    fmt: Callable[[float], str],
    empty: str,
    top: float | None = None,
    width: int = 640,
    height: int = 300,
) -> SafeString:
    """Values over time, one colour per series, with a legend."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return _empty(empty, width, 120)
    left, right, head, foot = 78, 44, 16, 64
    legend_rows = math.ceil(len(drawn) / 3)
    height += 18 * legend_rows
    plot_w, plot_h = width - left - right, height - head - foot - 18 * legend_rows
    stamps = [t.timestamp() for s in drawn for t, _ in s.points]
    t0, t1 = min(stamps), max(stamps)
    span = (t1 - t0) or 1.0
    ticks = nice_ticks(top or max(v for s in drawn for _, v in s.points))
    base = head + plot_h

    def x_of(t: datetime) -> float:
        return left + (t.timestamp() - t0) / span * plot_w if t1 > t0 else left + plot_w / 2

    def y_of(v: float) -> float:
        return base - v / ticks[-1] * plot_h

    out = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} '
        f'{height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for v in ticks:
        y = y_of(v)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e5e5e5"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>'
            f"{escape(fmt(v))}</text>"
        )
    for i in range(5):
        stamp = t0 + span * i / 4 if t1 > t0 else t0
        x = left + plot_w * i / 4 if t1 > t0 else left + plot_w / 2
        label = datetime.fromtimestamp(stamp, tz=drawn[0].points[0][0].tzinfo)
        out.append(
            f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle" {FONT}>'
            f'{label:%m-%d %H:%M}</text><line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" '
            f'y2="{base + 4}" stroke="#888"/>'
        )
        if t1 == t0:
            break
    out.append(
        f'<text x="{left + plot_w / 2}" y="{base + 34}" text-anchor="middle" {FONT}>time (UTC)'
        f'</text><text transform="translate(14 {head + plot_h / 2}) rotate(-90)" '
        f'text-anchor="middle" {FONT}>{escape(y_label)}</text>'
        f'<line x1="{left}" y1="{head}" x2="{left}" y2="{base}" stroke="#888"/>'
        f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#888"/>'
    )
    for i, s in enumerate(drawn):
        color = PALETTE[i % len(PALETTE)]
        passed = s.passed or [True] * len(s.points)
        ok = [(x_of(t), y_of(v)) for (t, v), p in zip(s.points, passed, strict=True) if p]
        if s.line and len(ok) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in ok)
            out.append(
                f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" '
                f'points="{path}"/>'
            )
        if len(s.points) <= MAX_MARKERS:
            for (t, v), p in zip(s.points, passed, strict=True):
                x, y = x_of(t), y_of(v)
                tip = escape(f"{s.name} {t:%Y-%m-%d %H:%M:%S}: {fmt(v)}{'' if p else ' (failed)'}")
                if p:
                    out.append(
                        f'<circle class="point" data-value="{v}" cx="{x:.1f}" cy="{y:.1f}" r="3.5"'
                        f' fill="{color}"><title>{tip}</title></circle>'
                    )
                else:
                    out.append(
                        f'<g class="point fail" data-value="{v}" stroke="{FAIL}" '
                        f'stroke-width="2.5"><title>{tip}</title>'
                        f'<line x1="{x - 5:.1f}" y1="{y - 5:.1f}" x2="{x + 5:.1f}" '
                        f'y2="{y + 5:.1f}"/><line x1="{x - 5:.1f}" y1="{y + 5:.1f}" '
                        f'x2="{x + 5:.1f}" y2="{y - 5:.1f}"/></g>'
                    )
        lx = left + (i % 3) * (plot_w / 3)
        ly = height - 10 - 18 * (legend_rows - 1 - i // 3)
        out.append(
            f'<g class="legend"><rect x="{lx:.1f}" y="{ly - 9}" width="12" height="12" '
            f'fill="{color}"/><text x="{lx + 17:.1f}" y="{ly + 1}" {FONT}>'
            f"{escape(s.name)}</text></g>"
        )
    if any(s.passed and not all(s.passed) for s in drawn):
        out.append(
            f'<text x="{left + plot_w}" y="{head + 10}" text-anchor="end" '
            f'font-family="system-ui, sans-serif" font-size="12" fill="{FAIL}">'
            "✕ = rejected or expired</text>"
        )
    out.append("</svg>")
    return mark_safe("".join(out))
