"""Assembling a running agent from its settings: bus, decoder, rules, spool, publisher."""

from __future__ import annotations

import logging
import threading
from typing import Any

import can

from edge.agent import Agent, AgentStats
from edge.config import EdgeSettings
from edge.decode import Decoder, load_dbcs
from edge.errors import ConfigError
from edge.publish import Publisher
from edge.rules import load_rules
from edge.spool import Spool

log = logging.getLogger(__name__)


def open_bus(settings: EdgeSettings) -> can.BusABC:
    """Open the configured python-can bus, ignoring python-can's own config files.

    Raises:
        ConfigError: the interface is unknown or the channel cannot be opened.
    """
    kwargs: dict[str, Any] = {}
    if settings.bitrate is not None:
        kwargs["bitrate"] = settings.bitrate
    try:
        return can.Bus(interface=settings.interface, channel=settings.channel,
                       ignore_config=True, **kwargs)
    except (can.CanError, ValueError, OSError, NotImplementedError) as exc:
        raise ConfigError(
            f"cannot open CAN interface {settings.interface!r} channel {settings.channel!r}: "
            f"{exc}"
        ) from exc


def run_agent_forever(settings: EdgeSettings, stop: threading.Event) -> AgentStats:
    """Run one agent until ``stop`` is set; return its final counters."""
    decoder = Decoder(load_dbcs(settings.dbc))
    rules = load_rules(settings.rules)
    spool = Spool(settings.spool_dir / settings.vehicle_id, max_bytes=settings.spool_max_bytes)
    publisher = Publisher(spool, settings.broker_url, client_id=f"fleetcare-edge-"
                          f"{settings.vehicle_id}")
    bus = open_bus(settings)
    agent = Agent(settings.vehicle_id, bus, decoder, rules, spool, publisher,
                  batch_signals=settings.batch_signals,
                  batch_interval_s=settings.batch_interval_s)
    publisher.start()
    log.info("agent %s reading %s:%s", settings.vehicle_id, settings.interface, settings.channel)
    try:
        agent.run(stop)
        publisher.wait_drained(timeout=5.0)
    finally:
        publisher.stop()
        bus.shutdown()
    return agent.stats()
