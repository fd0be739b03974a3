"""Running a simulated fleet: one simulator and one real agent per vehicle, on virtual buses.

Each vehicle gets its own python-can ``virtual`` channel: the simulator sends frames stamped
with simulated time (``preserve_timestamps``), and an unmodified :class:`~edge.agent.Agent`
reads them, decodes, spools and publishes to the broker exactly as it would on a gateway.
The runner moves all vehicles forward one simulated day at a time and lets no agent fall more
than a day behind, so memory stays bounded however long the simulation. At the end each
vehicle's ground truth is published on the simulator topic.

The agents delete spool entries on the store's receipts, like a gateway (``edge run``): the
broker's PUBACK only marks an entry sent, so a broker killed with ``kill -9`` loses nothing
they had spooled. The run ends once every spool is empty, i.e. once ``fleetcare ingest`` has
committed everything, or after ``drain_timeout_s``; :class:`FleetResult` says how many
entries were receipted, sent again for want of a receipt, and left over. ``receipts=False``
deletes entries on the PUBACK instead, for a broker with no ingest behind it (a benchmark of
the broker leg alone).

Each agent reports its vehicle info as it starts (stamped with the simulation's start), and a
vehicle with a VIN answers its gateway's VIN request every simulated morning: the agent's
OBD-II tap reads it, and the agent reports it once, as on a real car.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import can
import cantools.database

from edge.agent import Agent, AgentStats
from edge.decode import Decoder
from edge.diag.taps import make_taps
from edge.errors import BrokerUnreachableError
from edge.identity import AgentIdentity, identity_of
from edge.publish import Publisher, Receipts
from edge.reference import reference_dbc
from edge.rules import RuleSet
from edge.sim.capacity import check_fits
from edge.sim.simulator import VehicleSimulator, VehicleSpec, load_reference_dbc
from edge.spool import Spool
from edge.wire import contract
from edge.wire.mqtt import redact_url

log = logging.getLogger(__name__)

RECEIPT_TIMEOUT_MAX_S: Final = 480.0
"""The longest wait for a receipt between re-sends (as ``edge run``'s default)."""


@dataclass(frozen=True, slots=True)
class FleetResult:
    """Totals over the fleet; ``signals_spooled`` is what the backend must land."""

    vehicles: int
    days: int
    frames_sent: int
    frames_read: int
    frames_decoded: int
    unknown_frames: int
    invalid_signals: int
    signals_spooled: int
    dtc_events: int
    messages: int
    spool_dropped: int
    per_vehicle: dict[str, AgentStats]
    messages_receipted: int = 0
    """Spool entries the store's receipts deleted (0 with receipts off)."""
    messages_resent: int = 0
    """Entries sent again because no receipt came in time (harmless: landed once)."""
    messages_undelivered: int = 0
    """Entries still spooled when the run ended: not receipted (with receipts off: not
    acknowledged) within ``drain_timeout_s``."""


@dataclass
class _Lane:
    """One vehicle: its simulator, its bus pair, its agent and publisher."""

    sim: VehicleSimulator
    days: Iterator[list[can.Message]]
    sim_bus: can.BusABC
    agent_bus: can.BusABC
    agent: Agent
    publisher: Publisher
    spool: Spool
    sent: int = 0
    stopped: bool = False


def run_fleet(specs: Sequence[VehicleSpec], broker_url: str, rules: RuleSet, *, days: int,
              start_ts: float, spool_dir: Path, snapshot_s: float = 1.0,
              on_day: Callable[[int], None] | None = None,
              drain_timeout_s: float = 300.0,
              connect_timeout_s: float | None = None,
              on_ready: Callable[[], None] | None = None,
              identity: AgentIdentity | None = None,
              receipts: bool = True,
              receipt_timeout_s: float = 30.0) -> FleetResult:
    """Simulate ``days`` days of every vehicle in ``specs`` through real agents.

    Args:
        specs: the vehicles.
        broker_url: where the agents publish.
        rules: the agents' collection rules.
        days: simulated days.
        start_ts: simulated Unix time of day 0.
        spool_dir: parent of the per-vehicle spools.
        snapshot_s: seconds of bus traffic per simulated day.
        on_day: called after each simulated day (progress bars).
        drain_timeout_s: how long to wait at the end, for the whole fleet, until the store
            has receipted everything (the broker acknowledged it, with receipts off).
        connect_timeout_s: every agent must be connected within this many seconds, before
            the first simulated day (None: agents connect whenever the broker lets them).
        on_ready: called once every agent is started (and connected, with
            ``connect_timeout_s``), before the first simulated day; it may block, e.g. until
            the other processes of a sharded fleet are ready too.
        identity: what the agents report as their version and file fingerprints (None: the
            installed version and the reference DBC's fingerprint, no rules fingerprint).
        receipts: delete spool entries on the store's receipts (True, as a gateway does) or
            on the broker's PUBACK (a broker with no ``fleetcare ingest`` behind it).
        receipt_timeout_s: an entry sent but not receipted is sent again this long after
            its PUBACK, then after twice as long each time (as ``edge run``'s
            ``receipt_timeout_s``).

    Raises:
        BrokerUnreachableError: an agent had no connection within ``connect_timeout_s``.
        FleetCapacityError: the vehicles' descriptors would pass what paho's ``select()``
            can watch in this process (:func:`edge.sim.shards.run_fleet_processes` spreads
            a larger fleet over several processes).
    """
    check_fits(len(specs))  # else a client past descriptor 1023 reconnects forever, silently
    db = load_reference_dbc()
    decoder_ids = {m.frame_id for m in db.messages}
    quiet = connect_timeout_s is not None  # a failure is then reported once, not per agent
    identity = identity or identity_of([reference_dbc()], None)
    lanes = [_lane(spec, db, decoder_ids, rules, broker_url, start_ts, days, snapshot_s,
                   spool_dir, identity, quiet,
                   receipts=Receipts(spec.vehicle_id, receipt_timeout_s,
                                     max(RECEIPT_TIMEOUT_MAX_S, receipt_timeout_s))
                   if receipts else None) for spec in specs]
    try:
        for lane in lanes:
            lane.publisher.start()
        if connect_timeout_s is not None:
            _wait_connected(lanes, broker_url, connect_timeout_s)
        if on_ready is not None:
            on_ready()
        for lane in lanes:
            lane.agent.announce(start_ts)
        for day in range(days):
            _simulate_day(lanes)
            if on_day is not None:
                on_day(day)
        _drain(lanes)
        _publish_truth(lanes)
        _wait_delivered(lanes, drain_timeout_s, receipts)
        # Counted once every publisher thread has ended: the receipt that empties a spool is
        # counted just after the entries leave it, and a count read before would miss it.
        _stop_publishers(lanes)
        return _result(lanes, days)
    finally:
        _stop_publishers(lanes)
        for lane in lanes:
            lane.sim_bus.shutdown()
            lane.agent_bus.shutdown()


def _stop_publishers(lanes: Sequence[_Lane]) -> None:
    """Stop every publisher not stopped yet (what is still spooled stays on disk)."""
    for lane in lanes:
        if not lane.stopped:
            lane.stopped = True
            lane.publisher.stop()


def _lane(spec: VehicleSpec, db: cantools.database.can.Database, frame_ids: set[int],
          rules: RuleSet, broker_url: str, start_ts: float, days: int, snapshot_s: float,
          spool_dir: Path, identity: AgentIdentity, quiet_first_connect: bool = False, *,
          receipts: Receipts | None = None) -> _Lane:
    channel = f"fleetcare-sim-{spec.vehicle_id}-{uuid.uuid4().hex[:8]}"
    sim_bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    agent_bus = can.Bus(interface="virtual", channel=channel)
    spool = Spool(spool_dir / spec.vehicle_id, fsync=False)
    publisher = Publisher(spool, broker_url, client_id=f"fleetcare-edge-{spec.vehicle_id}",
                          quiet_first_connect=quiet_first_connect,
                          receipts=receipts)
    agents: list[Agent] = []
    taps = make_taps(["obd"], on_vin=lambda vin, how: agents[0].report_vin(vin, how)
                     ) if spec.vin else []
    agent = Agent(spec.vehicle_id, agent_bus, Decoder([db], frame_ids), rules, spool, publisher,
                  taps=taps, identity=identity)
    agents.append(agent)
    sim = VehicleSimulator(spec, db, start_ts=start_ts, days=days, snapshot_s=snapshot_s)
    return _Lane(sim, sim.iter_days(), sim_bus, agent_bus, agent, publisher, spool)


def _wait_connected(lanes: Sequence[_Lane], broker_url: str, timeout_s: float) -> None:
    """Fail in seconds, not after a whole simulation spooled for a broker that is not there."""
    deadline = time.monotonic() + timeout_s
    for lane in lanes:
        if not lane.publisher.wait_connected(max(0.0, deadline - time.monotonic())):
            why = lane.publisher.last_connect_error or "no answer"
            raise BrokerUnreachableError(
                f"broker {redact_url(broker_url)} unreachable: {why} (vehicle "
                f"{lane.agent.vehicle_id} had no connection within {timeout_s:g} s)")


def _wait_delivered(lanes: Sequence[_Lane], timeout_s: float, receipts: bool) -> None:
    """Wait, ``timeout_s`` for the whole fleet, until every spool is empty; say what is left."""
    deadline = time.monotonic() + timeout_s
    left = [lane for lane in lanes
            if not lane.publisher.wait_drained(max(0.0, deadline - time.monotonic()))]
    if left:
        waiting = sum(lane.spool.stats().pending for lane in left)
        log.warning("%d messages of %d vehicles (%s first) still spooled after %.0f s: %s",
                    waiting, len(left), left[0].agent.vehicle_id, timeout_s,
                    "no receipt from the store (is fleetcare ingest running?)" if receipts
                    else "the broker did not acknowledge them")


def _simulate_day(lanes: Sequence[_Lane]) -> None:
    """Send one day on every bus, then let every agent read it (bounded lag, bounded memory)."""
    for lane in lanes:
        frames = next(lane.days, [])
        for frame in frames:
            lane.sim_bus.send(frame)
        lane.sent += len(frames)
    _drain(lanes)


def _drain(lanes: Sequence[_Lane]) -> None:
    """Let each agent read everything sent to it so far, then spool its partial batch.

    One lane after the other, in this thread: a virtual bus delivers a frame into the
    reader's queue as it is sent, so every frame is waiting already and no read ever blocks
    (``poll_s=0``). A thread per lane bought nothing (decoding holds the GIL) and, with a
    2,000-vehicle fleet on two cores, made two thousand threads a day fight for the GIL:
    the MQTT clients of the same processes then went unserved for longer than their
    keepalive, and the broker dropped them.
    """
    for lane in lanes:
        def read_all(lane: _Lane = lane) -> bool:
            return lane.agent.stats().frames_read >= lane.sent
        lane.agent.drain(read_all, poll_s=0)
        lane.agent.flush()


def _publish_truth(lanes: Sequence[_Lane]) -> None:
    """Ground truth goes through each vehicle's spool, like any other message."""
    for lane in lanes:
        vehicle_id = lane.agent.vehicle_id
        record = lane.sim.truth(f"truth-{vehicle_id}-{uuid.uuid4().hex[:12]}")
        lane.spool.append(contract.truth_topic(vehicle_id), contract.encode(record))
        lane.publisher.notify()


def _result(lanes: Sequence[_Lane], days: int) -> FleetResult:
    stats = {lane.agent.vehicle_id: lane.agent.stats() for lane in lanes}
    values = list(stats.values())
    sent = [lane.publisher.stats() for lane in lanes]
    return FleetResult(
        vehicles=len(lanes), days=days, frames_sent=sum(lane.sent for lane in lanes),
        frames_read=sum(s.frames_read for s in values),
        frames_decoded=sum(s.frames_decoded for s in values),
        unknown_frames=sum(s.unknown_frames for s in values),
        invalid_signals=sum(s.invalid_signals for s in values),
        signals_spooled=sum(s.signals_spooled for s in values),
        dtc_events=sum(s.dtc_events for s in values),
        messages=sum(s.messages_spooled for s in values) + len(lanes),
        spool_dropped=sum(lane.spool.stats().dropped for lane in lanes),
        per_vehicle=stats,
        messages_receipted=sum(s.receipted for s in sent),
        messages_resent=sum(s.resent for s in sent),
        messages_undelivered=sum(lane.spool.stats().pending for lane in lanes),
    )
