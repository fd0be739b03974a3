"""Charts drawn on the server as inline SVG: no script, no library, nothing fetched.

Console machines often have no internet and a service advisor's browser may block scripts, so
a chart is plain markup the page carries itself. Each chart is a ``<figure class="chart">``
with a caption; with nothing to draw it says so in words instead of drawing empty axes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

WIDTH: Final = 640
HEIGHT: Final = 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 12, 34
COLOURS: Final = ("#1f5fa8", "#c2410c", "#15803d", "#7e22ce", "#a16207")


@dataclass(frozen=True, slots=True)
class Line:
    """One series of a line chart: its label and its (day, value) points in day order."""

    label: str
    points: Sequence[tuple[dt.date, float]]


@dataclass(frozen=True, slots=True)
class Mark:
    """One event on a timeline: when, on which row, its tooltip, and whether it is filled
    (a report) or hollow (a clearing)."""

    at: dt.datetime
    row: str
    text: str
    filled: bool = True


@dataclass(frozen=True, slots=True)
class _Scale:
    """A linear map from data values to pixels."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        span = self.high - self.low or 1.0
        return self.start + (value - self.low) / span * (self.end - self.start)


def _padded(values: Sequence[float]) -> tuple[float, float]:
    """The range of ``values`` with a little room above and below (never zero-wide)."""
    low, high = min(values), max(values)
    room = (high - low) * 0.08 or max(abs(high) * 0.05, 1.0)
    return low - room, high + room


def _figure(chart: str, title: str, body: str) -> str:
    return (f'<figure class="chart" data-chart="{escape(chart)}">'
            f"<figcaption>{escape(title)}</figcaption>{body}</figure>")


def no_data(chart: str, title: str, words: str) -> str:
    """The figure for a chart with nothing to draw: a sentence saying what is missing."""
    return _figure(chart, title, f'<p class="no-data">{escape(words)}</p>')


def _svg(title: str, inner: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">'
            f"<title>{escape(title)}</title>{inner}</svg>")


def _number(value: float, span: float = 0.0) -> str:
    """``value`` with as many decimals as a ``span``-wide axis needs to tell its ticks apart
    (a 12 V axis from 10.7 to 10.8 needs two, a pad-wear axis from 30 to 105 none)."""
    if span <= 0:
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    decimals = max(0, min(4, -math.floor(math.log10(span / 2))))
    return f"{value:.{decimals}f}"


def _axes(y: _Scale, unit: str, x_labels: tuple[str, str]) -> str:
    """Frame, three horizontal grid lines with values, and the first and last x label."""
    parts = [f'<rect x="{_LEFT}" y="{_TOP}" width="{WIDTH - _LEFT - _RIGHT}" '
             f'height="{HEIGHT - _TOP - _BOTTOM}" fill="none" stroke="#999"/>']
    for share in (0.0, 0.5, 1.0):
        value = y.low + (y.high - y.low) * share
        py = y(value)
        parts.append(f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{py:.1f}" y2="{py:.1f}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text x="{_LEFT - 4}" y="{py + 4:.1f}" text-anchor="end" '
                     f'font-size="11">{escape(_number(value, y.high - y.low))}</text>')
    parts.append(f'<text x="4" y="{_TOP + 10}" font-size="11">{escape(unit)}</text>')
    parts.append(f'<text x="{_LEFT}" y="{HEIGHT - 12}" font-size="11">'
                 f"{escape(x_labels[0])}</text>")
    parts.append(f'<text x="{WIDTH - _RIGHT}" y="{HEIGHT - 12}" text-anchor="end" '
                 f'font-size="11">{escape(x_labels[1])}</text>')
    return "".join(parts)


def _legend(labels: Sequence[str]) -> str:
    items = "".join(f'<li><span class="swatch" style="background:{COLOURS[i % len(COLOURS)]}">'
                    f"</span>{escape(label)}</li>" for i, label in enumerate(labels))
    return f'<ul class="legend">{items}</ul>'


def line_chart(chart: str, title: str, unit: str, lines: Sequence[Line], *,
               empty: str, limit: tuple[float, str] | None = None) -> str:
    """Daily series over time, one polyline each; ``limit`` draws a dashed reference line
    (a value and its label, e.g. the pad wear limit)."""
    drawn = [line for line in lines if line.points]
    if not drawn:
        return no_data(chart, title, empty)
    days = [day for line in drawn for day, _ in line.points]
    first, last = min(days), max(days)
    values = [value for line in drawn for _, value in line.points]
    if limit is not None:
        values.append(limit[0])
    x = _Scale(0, max((last - first).days, 1), _LEFT, WIDTH - _RIGHT)
    y = _Scale(*_padded(values), HEIGHT - _BOTTOM, _TOP)
    parts = [_axes(y, unit, (first.isoformat(), last.isoformat()))]
    if limit is not None:
        py = y(limit[0])
        parts.append(f'<line class="limit" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{py:.1f}" '
                     f'y2="{py:.1f}" stroke="#b91c1c" stroke-dasharray="6 4"/>'
                     f'<text x="{WIDTH - _RIGHT - 4}" y="{py - 4:.1f}" text-anchor="end" '
                     f'font-size="11" fill="#b91c1c">{escape(limit[1])}</text>')
    for i, line in enumerate(drawn):
        points = " ".join(f"{x((day - first).days):.1f},{y(value):.1f}"
                          for day, value in line.points)
        parts.append(f'<polyline class="series" fill="none" stroke-width="2" '
                     f'stroke="{COLOURS[i % len(COLOURS)]}" points="{points}">'
                     f"<title>{escape(line.label)}</title></polyline>")
    body = _svg(title, "".join(parts)) + _legend([line.label for line in drawn])
    return _figure(chart, title, body)


def scatter_chart(chart: str, title: str, x_title: str, x_unit: str, y_unit: str,
                  points: Sequence[tuple[float, float, str]], *, empty: str) -> str:
    """One dot per (x, y, tooltip): e.g. a day's lowest cranking voltage against its air
    temperature, where a weak battery shows as dips that deepen in the cold. ``x_title``
    names the horizontal axis."""
    if not points:
        return no_data(chart, title, empty)
    x = _Scale(*_padded([p[0] for p in points]), _LEFT, WIDTH - _RIGHT)
    y = _Scale(*_padded([p[1] for p in points]), HEIGHT - _BOTTOM, _TOP)
    low, high = x.low, x.high
    labels = (f"{_number(low, high - low)} {x_unit}", f"{_number(high, high - low)} {x_unit}")
    parts = [_axes(y, y_unit, labels),
             f'<text x="{(_LEFT + WIDTH - _RIGHT) / 2:.0f}" y="{HEIGHT - 12}" '
             f'text-anchor="middle" font-size="11">{escape(x_title)}</text>']
    parts.extend(f'<circle class="point" cx="{x(px):.1f}" cy="{y(py):.1f}" r="3" '
                 f'fill="{COLOURS[0]}" fill-opacity="0.7"><title>{escape(tip)}</title></circle>'
                 for px, py, tip in points)
    return _figure(chart, title, _svg(title, "".join(parts)))


def timeline_chart(chart: str, title: str, marks: Sequence[Mark], *, empty: str) -> str:
    """Events over time, one row per label (a fault code): filled dots are reports,
    hollow ones clearings."""
    if not marks:
        return no_data(chart, title, empty)
    rows = sorted({mark.row for mark in marks})
    first = min(mark.at for mark in marks)
    last = max(mark.at for mark in marks)
    span = max((last - first).total_seconds(), 1.0)
    x = _Scale(-span * 0.04, span * 1.04, _LEFT + 40, WIDTH - _RIGHT)
    step = (HEIGHT - _TOP - _BOTTOM) / max(len(rows), 1)
    parts = [f'<rect x="{_LEFT + 40}" y="{_TOP}" width="{WIDTH - _LEFT - 40 - _RIGHT}" '
             f'height="{HEIGHT - _TOP - _BOTTOM}" fill="none" stroke="#999"/>']
    for i, row in enumerate(rows):
        py = _TOP + step * (i + 0.5)
        parts.append(f'<text x="{_LEFT + 34}" y="{py + 4:.1f}" text-anchor="end" '
                     f'font-size="11">{escape(row)}</text>')
        parts.append(f'<line x1="{_LEFT + 40}" x2="{WIDTH - _RIGHT}" y1="{py:.1f}" '
                     f'y2="{py:.1f}" stroke="#eee"/>')
    for mark in marks:
        px = x((mark.at - first).total_seconds())
        py = _TOP + step * (rows.index(mark.row) + 0.5)
        fill = COLOURS[1] if mark.filled else "white"
        parts.append(f'<circle class="event" cx="{px:.1f}" cy="{py:.1f}" r="5" fill="{fill}" '
                     f'stroke="{COLOURS[1]}" stroke-width="2"><title>{escape(mark.text)}'
                     "</title></circle>")
    parts.append(f'<text x="{_LEFT + 40}" y="{HEIGHT - 12}" font-size="11">'
                 f"{escape(first.date().isoformat())}</text>")
    parts.append(f'<text x="{WIDTH - _RIGHT}" y="{HEIGHT - 12}" text-anchor="end" '
                 f'font-size="11">{escape(last.date().isoformat())}</text>')
    return _figure(chart, title, _svg(title, "".join(parts)))
