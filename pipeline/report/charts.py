"""The report's two bar charts, drawn only when there is something to draw.

An empty chart (no bars, an axis from -0.04 to 0.04) tells a reader nothing and looks like a
fault; the page says in words that there is no data instead, and no PNG is written (an old one
left in the folder by an earlier run is removed, so the folder never shows stale figures).
Uses matplotlib's object API (no pyplot): no global figure state, safe in any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: its label (with its n) and value; ``small`` bars are drawn pale."""

    label: str
    value: float
    small: bool


def bar_chart(bars: Sequence[Bar], path: Path, title: str, unit: str) -> Path | None:
    """Write a horizontal bar chart to ``path``; None (and no file) when ``bars`` is empty."""
    if not bars:
        path.unlink(missing_ok=True)
        return None
    fig = Figure(figsize=(7.5, 0.45 * max(len(bars), 2) + 1.4))
    ax = fig.subplots()
    colours = ["#b7c9de" if b.small else "#3b6ea5" for b in bars]
    ax.barh([b.label for b in bars], [b.value for b in bars], color=colours)
    ax.invert_yaxis()
    ax.set_xlim(0, max(max(b.value for b in bars) * 1.15, 1.0))
    ax.set_xlabel(unit)
    for index, bar in enumerate(bars):
        ax.text(bar.value, index, f" {bar.value:g}", va="center", fontsize=8)
    ax.set_title(title + ("  (pale: small n)" if any(b.small for b in bars) else ""),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    return path
