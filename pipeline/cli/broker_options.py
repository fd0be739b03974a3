"""The option both broker configurations share: the fleet their limits are sized for.

``fleetcare broker`` and ``fleetcare pki broker-config`` write the same queue, size and save
settings (:mod:`pipeline.broker.limits`); a deployment of 50 vehicles should not queue, and
save, for 2,000.
"""

from __future__ import annotations

import argparse

from pipeline.broker.limits import DESIGN_VEHICLES

__all__ = ["add_fleet_size_argument"]


def _vehicles(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number of vehicles")
    return value


def add_fleet_size_argument(parser: argparse.ArgumentParser) -> None:
    """``--fleet-size VEHICLES``: what the queue, the message limits and the save interval
    are derived for."""
    parser.add_argument("--fleet-size", type=_vehicles, default=DESIGN_VEHICLES,
                        metavar="VEHICLES",
                        help="vehicles the broker's queue (a three-minute ingest outage) and "
                             "save interval are sized for (default: %(default)s)")

