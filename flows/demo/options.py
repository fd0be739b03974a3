"""The demo's options, kept apart so ``fleetcare --help`` imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoOptions:
    """What to simulate and where to put it."""

    output_dir: Path = Path("demo-output")
    vehicles: int = 150
    days: int = 180
    seed: int = 1
    failing_share: float = 0.9
    """Share of vehicles placed near a failure (``sim run --failing-share``): a model is
    promoted only when its held-out quarter holds 5 failures of its part, so a demo fleet needs
    about 20 per part."""
    start: str | None = None
    """First simulated day, YYYY-MM-DD; None: ``days`` before today, so the fleet's newest
    readings are today's and its leads are fresh evidence, not held as stale."""
    snapshot_s: float = 0.2
    horizon_days: int | None = None
    """One horizon for every component; None: each its own
    (:data:`pipeline.features.labels.HORIZON_DAYS`)."""
    broker: str = "auto"
    progress: bool = True
    """Progress bars where stderr is a terminal (False: none anywhere)."""
