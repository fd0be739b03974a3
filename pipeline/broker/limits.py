"""What the broker may hold and how often it saves it: the limits in every generated
mosquitto configuration (``fleetcare broker`` and ``fleetcare pki broker-config``).

mosquitto 2.0.11 acknowledges a QoS 1 publish as soon as the message is in memory. Past
``max_queued_messages`` (default 1,000) or ``max_queued_bytes`` for an offline persistent
session it drops further messages *while still acknowledging them*, and it writes its
persistence file only every ``autosave_interval``, so a ``kill -9`` loses what arrived since
the last save. The limits below are therefore derived, not guessed:

* **Message size** is the contract's: ``edge.wire.contract.MAX_PAYLOAD_BYTES`` is the most
  ingest lands in one message, and the agent splits batches to stay under it, so the broker
  refuses anything larger instead of queueing megabytes nobody lands. (mosquitto 2.0.11
  acknowledges such a publish and drops it without counting it in ``$SYS``: only a producer
  that ignores the contract can lose a message this way.)
* **Queue depth** is what the design fleet sends during the ingest outage the broker must
  bridge on its own (a restart or an upgrade of ``fleetcare ingest``), in messages and in
  bytes: ``vehicles x rate x outage``. One session (ingest's) subscribes to the whole fleet,
  so the per-client limit is the fleet's total. Longer outages are the agents' spools' job.
* **In flight** must hold one whole ingest batch: ingest acknowledges only after its commit,
  so every message of an open batch is unacknowledged at once.
* **Saving** is time-based, as often as a full queue allows. mosquitto rewrites its whole
  file at every save, in its one thread, about 1 s per 256 MB measured here: while it saves it
  accepts no connection and forwards nothing. So the interval is what keeps saving to at most
  :data:`SAVE_SHARE` of the broker's time with the queue full (62 s for the design fleet's
  1.66 GB): once a second, a 2,000-vehicle soak whose broker restarted with 200 MB stored
  spent most of each second saving, its listen queue overflowed and the fleet's reconnects
  timed out for minutes. A ``kill -9`` loses what arrived since the last save, and the
  agents' receipts make that a re-send, not a loss. ``autosave_on_changes true`` was measured
  and rejected: it counts changes, so fewer than ``autosave_interval`` of them (a trickle
  queued for a stopped ingest) are never saved before a ``kill -9``, while a small interval
  rewrites the whole file every few changes: with ``autosave_interval 1`` it published 64
  messages/s against 2,700 without persistence.
* **$SYS** counters are published every :data:`SYS_INTERVAL_S`; the health check reads
  ``$SYS/broker/publish/messages/dropped`` (kept readable by
  :class:`pipeline.broker.counters.DropWatcher`) and fails on any drop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge.wire import contract

DESIGN_VEHICLES: Final = 2_000
"""Vehicles one broker serves: the fleet the soak benchmark drives through real agents."""
TELEMETRY_MESSAGES_PER_VEHICLE_S: Final = 1.0
"""An agent on its defaults sends one telemetry batch per ``batch_interval_s`` (1 s); it sends
sooner only past ``batch_signals`` (500) samples, more than the design vehicle collects."""
HEALTH_MESSAGES_PER_VEHICLE_S: Final = 1 / 60
"""One health report per ``health_interval_s`` (60 s); fault-code events are rare next to it."""
SAMPLES_PER_VEHICLE_S: Final = 100
"""Signal samples the design vehicle collects per second (e.g. 20 signals at 5 Hz)."""
BYTES_PER_SAMPLE: Final = 46
"""Wire bytes per telemetry sample: 500-sample messages of the Kona EV log averaged 22,767 B."""
HEALTH_MESSAGE_BYTES: Final = 350
"""A health report with the standard counters encodes to about 345 bytes."""
INGEST_OUTAGE_S: Final = 180
"""The ingest outage the broker bridges alone: three minutes, a restart or an upgrade. Longer
would pass :data:`MOSQUITTO_INT_MAX` bytes for the design fleet."""
INFLIGHT_MESSAGES: Final = 10_000
"""Unacknowledged messages per client: one ingest batch (mosquitto's default of 20 would cap
a batch at 20 messages per flush interval)."""
SAVE_BYTES_PER_S: Final = 256 * 2**20
"""How fast mosquitto 2.0.11 rewrites its persistence file (about 1 s per 256 MB, measured)."""
SAVE_SHARE: Final = 0.1
"""The most of the broker's time saving may take with the queue full."""
SYS_INTERVAL_S: Final = 10
"""Seconds between updates of the ``$SYS`` counters the health check reads."""
MOSQUITTO_INT_MAX: Final = 2**31 - 1
"""mosquitto 2.0.11 reads its limits as C ints: ``max_queued_bytes 4294968296`` acted as a
1,000-byte limit (measured), so no limit may be larger than this."""
MQTT_MAX_PAYLOAD: Final = 268_435_455
"""The largest payload MQTT can carry (its remaining-length field)."""


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """The queue, size and persistence settings of one generated mosquitto configuration.

    Build it with :func:`derive_limits`; tests and benchmarks change single fields with
    :func:`dataclasses.replace` (a tiny queue to provoke drops, no persistence to prove that
    receipts alone lose nothing). ``vehicles`` and ``outage_s`` record what the queue was
    sized for, so the configuration's comments can say it.
    """

    max_queued_messages: int
    max_queued_bytes: int
    message_size_limit: int
    max_inflight_messages: int = INFLIGHT_MESSAGES
    persistence: bool = True
    autosave_interval_s: int = 1
    sys_interval_s: int = SYS_INTERVAL_S
    vehicles: int = DESIGN_VEHICLES
    outage_s: float = INGEST_OUTAGE_S

    def __post_init__(self) -> None:
        for name in ("max_queued_messages", "max_queued_bytes", "message_size_limit",
                     "max_inflight_messages", "autosave_interval_s", "sys_interval_s"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")
        for name in ("max_queued_messages", "max_queued_bytes", "max_inflight_messages"):
            if getattr(self, name) > MOSQUITTO_INT_MAX:
                raise ValueError(
                    f"{name} = {getattr(self, name):,} is more than mosquitto can read "
                    f"({MOSQUITTO_INT_MAX:,}, a C int): shorten the outage, or split the fleet "
                    "over several ingest sessions (--share-group) or brokers")
        if self.message_size_limit > MQTT_MAX_PAYLOAD:
            raise ValueError(f"message_size_limit must be at most {MQTT_MAX_PAYLOAD:,} (MQTT)")
        if self.sys_interval_s == 0:
            raise ValueError("sys_interval_s must be > 0: the health check reads $SYS")
        if self.autosave_interval_s == 0:
            raise ValueError("autosave_interval_s must be > 0 (0 would save only at exit)")


def derive_limits(vehicles: int = DESIGN_VEHICLES, outage_s: float = INGEST_OUTAGE_S, *,
                  samples_per_vehicle_s: float = SAMPLES_PER_VEHICLE_S) -> BrokerLimits:
    """The limits for ``vehicles`` whose traffic the broker must queue for ``outage_s``.

    messages = vehicles x (telemetry + health messages per second) x outage, and
    bytes = vehicles x (samples x bytes per sample + health bytes per second) x outage,
    both rounded up; the message size limit is the contract's; the save interval is the time
    a full queue takes to save over :data:`SAVE_SHARE`, rounded up (at least 1 s).

    Raises:
        ValueError: a non-positive (or non-finite) fleet, outage or sample rate.
    """
    for name, value in (("vehicles", vehicles), ("outage_s", outage_s),
                        ("samples_per_vehicle_s", samples_per_vehicle_s)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, not {value!r}")
    messages_per_s = TELEMETRY_MESSAGES_PER_VEHICLE_S + HEALTH_MESSAGES_PER_VEHICLE_S
    bytes_per_s = (samples_per_vehicle_s * BYTES_PER_SAMPLE
                   + HEALTH_MESSAGE_BYTES * HEALTH_MESSAGES_PER_VEHICLE_S)
    queued_bytes = math.ceil(vehicles * bytes_per_s * outage_s)
    return BrokerLimits(
        max_queued_messages=math.ceil(vehicles * messages_per_s * outage_s),
        max_queued_bytes=queued_bytes,
        message_size_limit=contract.MAX_PAYLOAD_BYTES,
        autosave_interval_s=max(1, math.ceil(queued_bytes / SAVE_BYTES_PER_S / SAVE_SHARE)),
        vehicles=vehicles, outage_s=outage_s)


DEFAULT_LIMITS: Final = derive_limits()
"""The limits both generated configurations use unless told otherwise."""


def durability_config(limits: BrokerLimits, data_dir: Path) -> str:
    """The mosquitto.conf lines for ``limits``, each group preceded by a comment saying why.

    ``data_dir`` is where ``mosquitto.db`` lives (it must be writable by the user mosquitto
    runs as). The text ends with a newline and holds no listener settings, so it can precede
    either generated listener.
    """
    outage_min = limits.outage_s / 60
    lines = [
        "# --- queue and size limits (pipeline/broker/limits.py) ---",
        f"# Queue: {limits.vehicles:,} vehicles x "
        f"{TELEMETRY_MESSAGES_PER_VEHICLE_S + HEALTH_MESSAGES_PER_VEHICLE_S:.4f} messages/s x "
        f"{limits.outage_s:g} s of ingest outage ({outage_min:g} min) = "
        f"{limits.max_queued_messages:,} messages;",
        f"# bytes: {limits.vehicles:,} x ({SAMPLES_PER_VEHICLE_S} samples/s x "
        f"{BYTES_PER_SAMPLE} B + health) x {limits.outage_s:g} s = "
        f"{limits.max_queued_bytes:,} B ({limits.max_queued_bytes / 2**30:.2f} GiB of memory"
        " when full).",
        "# Past either limit mosquitto drops messages while still acknowledging them:",
        "# the health check fails on $SYS/broker/publish/messages/dropped.",
        f"max_queued_messages {limits.max_queued_messages}",
        f"max_queued_bytes {limits.max_queued_bytes}",
        f"# In flight: one ingest batch ({limits.max_inflight_messages:,} messages) is "
        "unacknowledged until its commit.",
        f"max_inflight_messages {limits.max_inflight_messages}",
        f"# Size: the wire contract's MAX_PAYLOAD_BYTES ({limits.message_size_limit:,} B); "
        "a larger publish is dropped",
        "# (uncounted in $SYS; not max_packet_size: it disconnects, and the sender would "
        "re-send the same message forever).",
        f"message_size_limit {limits.message_size_limit}",
        f"# $SYS counters every {limits.sys_interval_s} s (read by the health check).",
        f"sys_interval {limits.sys_interval_s}",
    ]
    if limits.persistence:
        lines += [
            "# --- persistence ---",
            f"# Saved every {limits.autosave_interval_s} s: a save rewrites everything stored "
            f"(a full queue: {limits.max_queued_bytes / SAVE_BYTES_PER_S:.1f} s),",
            f"# so saving takes at most {SAVE_SHARE:.0%} of the broker's time; a kill -9 loses "
            "what arrived since the last save,",
            "# which the agents send again (they delete an entry on the store's receipt only).",
            "persistence true",
            f"persistence_location {data_dir}/",
            "autosave_on_changes false",
            f"autosave_interval {limits.autosave_interval_s}",
        ]
    else:
        lines += ["# --- persistence off: every session and queue dies with the broker ---",
                  "persistence false"]
    return "\n".join(lines) + "\n"
