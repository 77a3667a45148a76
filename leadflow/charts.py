"""Server-rendered charts: small inline SVG built from data, for the pages of every app
(it imports nothing from the apps).

Every piece of text that comes from data goes through ``escape``; numbers are
formatted here. The result is marked safe only because this module built all of
it. Colours and fonts come from ``static/css/app.css`` through class names (no
``style`` attributes), so the pages keep a strict Content-Security-Policy.

Each chart is drawn twice: ``<svg class="chart">`` for wide screens, and a narrower
drawing ``<svg class="chart-phone">`` (fewer labels, a smaller viewBox) that
``app.css`` shows instead on phones. An SVG scales its text with its width: the
640-unit drawing squeezed onto a phone rendered its 11-unit labels at about 5 px,
while the phone drawing keeps them at 11 px or more on a 360 px-wide screen.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

Number = int | float | Decimal

WIDTH = 640
# The phone drawing: a card on a 360 px-wide phone is about 286 px wide, so that 11-unit text
# renders at 11 px or more on every phone at least that wide.
PHONE_WIDTH = 280
PHONE_CLASS = "chart-phone"
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 12, 28, 30
NICE_STEPS = (1, 2, 2.5, 5, 10)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[Number]
    css_class: str = "series-1"


def _fmt(number: float) -> str:
    """A coordinate: short, locale-free."""
    return f"{number:.1f}".rstrip("0").rstrip(".")


def _label(number: Number) -> str:
    value = float(number)
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round tick values from 0 up to at least ``maximum`` (1, 2, 2.5 or 5 × 10ⁿ apart)."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(s * magnitude for s in NICE_STEPS if s * magnitude >= raw)
    if step < 1 and maximum >= 1:
        step = 1
    ticks = [0.0]
    while ticks[-1] < maximum:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _series_chart(
    chart_id: str, title: str, labels: Sequence[str], series: Sequence[Series], height: int, width: int
) -> tuple[list[str], float]:
    """The start of a chart of series over labels: title, description, y axis and
    legend. Returns the parts and the value at the top of the axis (the scale)."""
    parts = _open(chart_id, title, _description(labels, series), height, width)
    ticks = nice_ticks(max((float(v) for s in series for v in s.values), default=0))
    _y_axis(parts, ticks, height, width)
    _legend(parts, series, width)
    return parts, ticks[-1]


def _close_with_axis(parts: list[str], bottom: float, width: int) -> str:
    parts.append(f'<line class="axis" x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _both(draw: Callable[[str, int], str], chart_id: str) -> SafeString:
    """The wide drawing, then the phone's (its ids suffixed: each id stays unique)."""
    wide = draw(chart_id, WIDTH)
    phone = draw(f"{chart_id}-phone", PHONE_WIDTH)
    return mark_safe(wide + phone)  # noqa: S308 -- every text is escaped where it is written


def _open(chart_id: str, title: str, description: str, height: int, width: int) -> list[str]:
    css_class = "chart" if width == WIDTH else PHONE_CLASS
    return [
        f'<svg class="{css_class}" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'preserveAspectRatio="xMidYMid meet" aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d">',
        f'<title id="{escape(chart_id)}-t">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-d">{escape(description)}</desc>',
    ]


def _y_axis(parts: list[str], ticks: list[float], height: int, width: int) -> None:
    top, bottom = PAD_TOP, height - PAD_BOTTOM
    for tick in ticks:
        y = bottom - (bottom - top) * tick / ticks[-1]
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{_fmt(y)}" y2="{_fmt(y)}"/>')
        parts.append(f'<text class="tick" x="{PAD_LEFT - 6}" y="{_fmt(y + 4)}" text-anchor="end">{_label(tick)}</text>')


def _legend(parts: list[str], series: Sequence[Series], width: int) -> None:
    if len(series) < 2:
        return
    x = width - PAD_RIGHT
    for item in reversed(series):
        text_width = 7 * len(item.name) + 6
        x -= text_width
        parts.append(f'<text class="legend" x="{x}" y="14">{escape(item.name)}</text>')
        x -= 14
        parts.append(f'<rect class="{escape(item.css_class)}" x="{x}" y="5" width="10" height="10" rx="2"/>')
        x -= 12


def _x_label_every(count: int, room: int, width: int = WIDTH) -> int:
    """Every how many labels one is written: ``room`` labels fit the wide drawing, fewer a narrower one."""
    return max(1, math.ceil(count / max(1, room * width // WIDTH)))


def _description(labels: Sequence[str], series: Sequence[Series], limit: int = 40) -> str:
    pieces = []
    for index, label in enumerate(labels[:limit]):
        values = ", ".join(f"{s.name} {_label(s.values[index])}" for s in series)
        pieces.append(f"{label}: {values}")
    more = f" … and {len(labels) - limit} more" if len(labels) > limit else ""
    return "; ".join(pieces) + more


def bar_chart(
    *, chart_id: str, title: str, labels: Sequence[str], series: Sequence[Series], height: int = 220
) -> SafeString:
    """Vertical bars, grouped when there are several series."""
    return _both(lambda chart_id, width: _bar_chart(chart_id, title, labels, series, height, width), chart_id)


def _bar_chart(
    chart_id: str, title: str, labels: Sequence[str], series: Sequence[Series], height: int, width: int
) -> str:
    parts, scale = _series_chart(chart_id, title, labels, series, height, width)
    top, bottom = PAD_TOP, height - PAD_BOTTOM
    plot = width - PAD_LEFT - PAD_RIGHT
    slot = plot / max(len(labels), 1)
    gap = min(slot * 0.2, 12)
    bar = (slot - gap) / max(len(series), 1)
    every = _x_label_every(len(labels), 12, width)
    for index, label in enumerate(labels):
        x0 = PAD_LEFT + index * slot + gap / 2
        for position, item in enumerate(series):
            value = float(item.values[index])
            h = (bottom - top) * value / scale
            parts.append(
                f'<rect class="{escape(item.css_class)}" x="{_fmt(x0 + position * bar)}" y="{_fmt(bottom - h)}" '
                f'width="{_fmt(max(bar - 1, 1))}" height="{_fmt(h)}" rx="2">'
                f"<title>{escape(label)} · {escape(item.name)}: {_label(value)}</title></rect>"
            )
        if index % every == 0:
            parts.append(
                f'<text class="tick" x="{_fmt(x0 + (slot - gap) / 2)}" y="{bottom + 16}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    return _close_with_axis(parts, bottom, width)


def histogram(
    *,
    chart_id: str,
    title: str,
    lows: Sequence[Number],
    width: Number,
    series: Sequence[Series],
    markers: Sequence[tuple[Number, str]] = (),
    height: int = 220,
) -> SafeString:
    """Adjacent bars over uniform buckets ``[low, low + width)``; ``markers`` are
    vertical lines at values (e.g. the MQL and SQL thresholds)."""
    return _both(
        lambda chart_id, drawing: _histogram(chart_id, title, lows, width, series, markers, height, drawing), chart_id
    )


def _histogram(
    chart_id: str,
    title: str,
    lows: Sequence[Number],
    width: Number,
    series: Sequence[Series],
    markers: Sequence[tuple[Number, str]],
    height: int,
    drawing: int,
) -> str:
    labels = [f"{_label(low)}–{_label(float(low) + float(width))}" for low in lows]
    parts, scale = _series_chart(chart_id, title, labels, series, height, drawing)
    top, bottom = PAD_TOP, height - PAD_BOTTOM
    plot = drawing - PAD_LEFT - PAD_RIGHT
    count = max(len(lows), 1)
    slot = plot / count
    bar = slot / max(len(series), 1)
    for index in range(len(lows)):
        for position, item in enumerate(series):
            value = float(item.values[index])
            h = (bottom - top) * value / scale
            parts.append(
                f'<rect class="{escape(item.css_class)}" x="{_fmt(PAD_LEFT + index * slot + position * bar + 0.5)}" '
                f'y="{_fmt(bottom - h)}" width="{_fmt(max(bar - 1, 1))}" height="{_fmt(h)}">'
                f"<title>Score {escape(labels[index])} · {escape(item.name)}: {_label(value)} leads</title></rect>"
            )
    every = _x_label_every(len(lows) + 1, 14, drawing)
    for index in range(0, len(lows) + 1, every):
        edge = float(lows[0]) + index * float(width) if lows else 0.0
        x = PAD_LEFT + index * slot
        parts.append(f'<text class="tick" x="{_fmt(x)}" y="{bottom + 16}" text-anchor="middle">{_label(edge)}</text>')
    if lows:
        start, span = float(lows[0]), float(width) * len(lows)
        for position, (threshold, name) in enumerate(markers):
            ratio = (float(threshold) - start) / span
            if 0 <= ratio <= 1:
                x = PAD_LEFT + plot * ratio
                y = top + 4 + 13 * position  # staggered: close thresholds must not overlap
                parts.append(f'<line class="marker" x1="{_fmt(x)}" x2="{_fmt(x)}" y1="{top - 6}" y2="{bottom}"/>')
                parts.append(
                    f'<text class="marker-label" x="{_fmt(x + 4)}" y="{y}">{escape(name)} {_label(threshold)}</text>'
                )
    return _close_with_axis(parts, bottom, drawing)


def line_chart(
    *, chart_id: str, title: str, days: Sequence[date], series: Sequence[Series], height: int = 220
) -> SafeString:
    """One line per series over consecutive days."""
    return _both(lambda chart_id, width: _line_chart(chart_id, title, days, series, height, width), chart_id)


def _line_chart(
    chart_id: str, title: str, days: Sequence[date], series: Sequence[Series], height: int, width: int
) -> str:
    labels = [day.isoformat() for day in days]
    parts, scale = _series_chart(chart_id, title, labels, series, height, width)
    top, bottom = PAD_TOP, height - PAD_BOTTOM
    plot = width - PAD_LEFT - PAD_RIGHT - 8
    step = plot / max(len(days) - 1, 1)

    def x_at(index: int) -> float:
        return PAD_LEFT + 4 + index * step

    for item in series:
        points = [
            (x_at(index), bottom - (bottom - top) * float(value) / scale) for index, value in enumerate(item.values)
        ]
        path = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in points)
        parts.append(f'<polyline class="line {escape(item.css_class)}" points="{path}"/>')
        if len(points) <= 45:
            for (x, y), label, value in zip(points, labels, item.values, strict=True):
                parts.append(
                    f'<circle class="dot {escape(item.css_class)}" cx="{_fmt(x)}" cy="{_fmt(y)}" r="2.5">'
                    f"<title>{escape(label)} · {escape(item.name)}: {_label(value)}</title></circle>"
                )
    every = _x_label_every(len(days), 8, width)
    for index in range(0, len(days), every):
        parts.append(
            f'<text class="tick" x="{_fmt(x_at(index))}" y="{bottom + 16}" text-anchor="middle">'
            f"{days[index].strftime('%b %-d')}</text>"
        )
    return _close_with_axis(parts, bottom, width)


def funnel_chart(
    *, chart_id: str, title: str, steps: Sequence[tuple[str, Number]], notes: Sequence[str] = (), height: int = 0
) -> SafeString:
    """Horizontal bars, one per funnel step, widest first; ``notes`` follow the values (e.g. rates).
    On phones each step's label and value stand above its bar, which spans the drawing."""
    return _both(
        lambda chart_id, width: (
            _funnel_chart(chart_id, title, steps, notes, height)
            if width == WIDTH
            else _phone_funnel_chart(chart_id, title, steps, notes, width)
        ),
        chart_id,
    )


def _note(notes: Sequence[str], index: int) -> str:
    return f' <tspan class="funnel-note">{escape(notes[index])}</tspan>' if index < len(notes) and notes[index] else ""


def _phone_funnel_chart(
    chart_id: str, title: str, steps: Sequence[tuple[str, Number]], notes: Sequence[str], width: int
) -> str:
    row = 44
    height = row * len(steps) + 4
    description = "; ".join(f"{label}: {_label(value)}" for label, value in steps)
    parts = _open(chart_id, title, description, height, width)
    maximum = max((float(value) for _, value in steps), default=0) or 1
    for index, (label, value) in enumerate(steps):
        y = index * row
        w = max(width * float(value) / maximum, 2 if float(value) else 0)
        parts.append(f'<text class="funnel-label" x="0" y="{y + 14}">{escape(label)}</text>')
        parts.append(
            f'<text class="funnel-value" x="{width}" y="{y + 14}" text-anchor="end">{_label(value)}'
            f"{_note(notes, index)}</text>"
        )
        parts.append(
            f'<rect class="funnel-bar step-{index + 1}" x="0" y="{y + 20}" width="{_fmt(w)}" height="16" '
            f'rx="4"><title>{escape(label)}: {_label(value)}</title></rect>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _funnel_chart(
    chart_id: str, title: str, steps: Sequence[tuple[str, Number]], notes: Sequence[str], height: int
) -> str:
    row = 34
    height = height or PAD_TOP // 2 + row * len(steps) + 4
    description = "; ".join(f"{label}: {_label(value)}" for label, value in steps)
    parts = _open(chart_id, title, description, height, WIDTH)
    maximum = max((float(value) for _, value in steps), default=0) or 1
    label_width = 110
    plot = WIDTH - label_width - 60
    for index, (label, value) in enumerate(steps):
        y = 6 + index * row
        w = max(plot * float(value) / maximum, 2 if float(value) else 0)
        parts.append(
            f'<text class="funnel-label" x="{label_width - 10}" y="{y + 18}" text-anchor="end">{escape(label)}</text>'
        )
        parts.append(
            f'<rect class="funnel-bar step-{index + 1}" x="{label_width}" y="{y}" width="{_fmt(w)}" height="{row - 8}" '
            f'rx="4"><title>{escape(label)}: {_label(value)}</title></rect>'
        )
        note = _note(notes, index)
        parts.append(
            f'<text class="funnel-value" x="{_fmt(label_width + w + 8)}" y="{y + 18}">{_label(value)}{note}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class RatePoint:
    """A rate in [0, 1] with its interval; None where undefined (nothing to measure)."""

    value: float | None
    low: float | None = None
    high: float | None = None


def rate_chart(
    *,
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[RatePoint], str]],
    height: int = 240,
) -> SafeString:
    return _both(lambda chart_id, width: _rate_chart(chart_id, title, labels, series, height, width), chart_id)


def _rate_chart(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[RatePoint], str]],
    height: int,
    width: int,
) -> str:
    """Rates (0–100 %) per label as dots with their interval as a whisker, one column of
    dots per series (name, points, CSS class) side by side; undefined rates are left out."""
    as_series = [Series(name, [100 * (p.value or 0) for p in points], css) for name, points, css in series]

    def spoken(point: RatePoint) -> str:
        return "—" if point.value is None else f"{_label(100 * point.value)}%"

    description = "; ".join(
        f"{label}: " + ", ".join(f"{name} {spoken(points[index])}" for name, points, _css in series)
        for index, label in enumerate(labels)
    )
    parts = _open(chart_id, title, description, height, width)
    ticks = [0.0, 25.0, 50.0, 75.0, 100.0]
    _y_axis(parts, ticks, height, width)
    _legend(parts, as_series, width)
    top, bottom = PAD_TOP, height - PAD_BOTTOM
    plot = width - PAD_LEFT - PAD_RIGHT
    slot = plot / max(len(labels), 1)
    step = slot / (len(series) + 1)

    def y_at(rate: float) -> float:
        return bottom - (bottom - top) * rate

    for index, label in enumerate(labels):
        x0 = PAD_LEFT + index * slot
        for position, (name, points, css) in enumerate(series):
            point = points[index]
            if point.value is None:
                continue
            x = x0 + step * (position + 1)
            if point.low is not None and point.high is not None:
                parts.append(
                    f'<line class="whisker {escape(css)}" x1="{_fmt(x)}" x2="{_fmt(x)}" '
                    f'y1="{_fmt(y_at(point.low))}" y2="{_fmt(y_at(point.high))}"/>'
                )
            interval = (
                f" ({_label(100 * point.low)}–{_label(100 * point.high)}%)"
                if point.low is not None and point.high is not None
                else ""
            )
            parts.append(
                f'<circle class="dot {escape(css)}" cx="{_fmt(x)}" cy="{_fmt(y_at(point.value))}" r="3.5">'
                f"<title>{escape(label)} · {escape(name)}: {_label(100 * point.value)}%{escape(interval)}</title>"
                "</circle>"
            )
        parts.append(
            f'<text class="tick" x="{_fmt(x0 + slot / 2)}" y="{bottom + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    return _close_with_axis(parts, bottom, width)


SPARK_WIDTH, SPARK_HEIGHT, SPARK_PAD = 320, 72, 8


def sparkline(*, chart_id: str, title: str, points: Sequence[tuple[str, Number]]) -> SafeString:
    """A small line of values over labelled moments (oldest first), one dot per point,
    each with its label and value as a tooltip; the description lists them all (the text
    alternative). The vertical scale spans the values' range, so small moves show."""
    description = "; ".join(f"{label}: {_value(value)}" for label, value in points) or "No scores yet."
    parts = [
        f'<svg class="chart sparkline" viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" width="100%" role="img" '
        f'preserveAspectRatio="xMidYMid meet" aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d">',
        f'<title id="{escape(chart_id)}-t">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-d">{escape(description)}</desc>',
    ]
    values = [float(value) for _, value in points]
    if values:
        low, high = min(values), max(values)
        span = (high - low) or 1.0
        step = (SPARK_WIDTH - 2 * SPARK_PAD) / max(len(values) - 1, 1)
        inner = SPARK_HEIGHT - 2 * SPARK_PAD
        xy = [
            (SPARK_PAD + index * step if len(values) > 1 else SPARK_WIDTH / 2, SPARK_PAD + inner * (high - v) / span)
            for index, v in enumerate(values)
        ]
        if len(xy) > 1:
            path = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in xy)
            parts.append(f'<polyline class="sparkline-line" points="{path}"/>')
        for (x, y), (label, value) in zip(xy, points, strict=True):
            parts.append(
                f'<circle class="sparkline-dot" cx="{_fmt(x)}" cy="{_fmt(y)}" r="3">'
                f"<title>{escape(label)}: {_value(value)}</title></circle>"
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 -- every text is escaped where it is written


def _value(number: Number) -> str:
    """A score as the pages print one: two decimals, halves up."""
    return str(Decimal(str(number)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
