"""Assembling a running agent from its settings: source, decoder, rules, taps, spool, publisher.

``run_agent_forever`` is ``fleetcare edge run`` (a gateway: read until SIGTERM);
``run_replay`` is ``fleetcare edge replay`` (read recordings to their end, then wait until the
backend's store has everything: with receipts on, the default, a spool entry leaves only on
ingest's receipt, so a drained spool means every message is committed). Both tell systemd
when they are ready and keep its watchdog fed only while the agent's loop is making progress.

A gateway keeps reading and spooling while the broker is away: that is what the spool is for.
A replay is a command someone waits for, so before it reads a frame it makes sure there is
something to read and that the broker answers, and says in one line what is wrong when not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from edge.agent import Agent, AgentStats, FrameTap
from edge.config import EdgeSettings
from edge.decode import Decoder, load_dbcs
from edge.errors import BrokerUnreachableError, ConfigError
from edge.identity import identity_of
from edge.logfile import LogFormatError
from edge.profiles import apply_profile
from edge.publish import Health, Publisher, Receipts
from edge.rules import load_rules
from edge.sdnotify import Watchdog
from edge.source import FrameSource, ReplaySource, open_source
from edge.spool import KEEP_UNSENT_BYTES, Spool
from edge.wire.mqtt import TlsFiles, redact_url

log = logging.getLogger(__name__)


@dataclass
class Assembly:
    """The parts of one running agent."""

    agent: Agent
    source: FrameSource
    spool: Spool
    publisher: Publisher
    poller: Any = None
    """The OBD-II poller (``edge.diag.poller.BusPoller``) when the settings ask the car for
    PIDs, else None."""

    def counters(self) -> dict[str, float]:
        """Everything counted so far, for health reports and summaries."""
        a, s, p = self.agent.stats(), self.spool.stats(), self.publisher.stats()
        counters: dict[str, float] = {
            "frames_received": a.frames_read, "frames_decoded": a.frames_decoded,
            "unknown_frames": a.unknown_frames, "filtered": a.filtered_frames,
            "invalid_signals": a.invalid_signals, "malformed_frames": a.malformed_frames,
            "signals_spooled": a.signals_spooled, "dtc_events": a.dtc_events,
            "crank_events": a.crank_events, "published": p.acked,
            "sent": p.acked, "receipted": p.receipted, "resent": p.resent,
            "awaiting_receipt": p.awaiting_receipt, "dead_lettered": p.dead_lettered,
            "spool_messages": s.pending, "spool_bytes": s.pending_bytes,
            "evicted": s.dropped, "evicted_bytes": s.dropped_bytes,
            "reconnects": p.reconnects,
        }
        if isinstance(self.source, ReplaySource):
            counters["log_malformed_lines"] = self.source.counters.malformed
        if self.poller is not None:
            counters["obd_polls"] = self.poller.polls
            counters["obd_poll_failures"] = self.poller.failures
        return counters


def load_taps(names: list[str], *,
              on_vin: Callable[[str, str], None] | None = None) -> list[FrameTap]:
    """The named frame taps (``obd``, ``j1939``, ``uds``), imported only when asked for.

    ``on_vin`` gets each new VIN the OBD-II or J1939 tap reads, and how it was read.

    Raises:
        ConfigError: the diagnostics package is not installed, or a name is unknown.
    """
    if not names:
        return []
    try:
        module = importlib.import_module("edge.diag.taps")
    except ModuleNotFoundError as exc:
        raise ConfigError(f"taps {', '.join(names)} need the edge.diag.taps module, which is "
                          f"not available in this install ({exc}); run without --taps") from exc
    try:
        taps: list[FrameTap] = module.make_taps(names, on_vin=on_vin)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"unknown tap in {names}: {exc}") from exc
    return taps


def assemble(settings: EdgeSettings, *, quiet_first_connect: bool = False) -> Assembly:
    """Build every part from the settings (nothing runs yet).

    ``quiet_first_connect``: the caller waits for the first connection and reports a failure
    itself (see :class:`~edge.publish.Publisher`). Settings that pick a signal profile get its
    DBC files, rules and taps (:func:`edge.profiles.apply_profile`).

    Raises:
        ConfigError, DbcError, SpoolError: something a person must fix; the message says what.
    """
    settings = apply_profile(settings)
    check_polling(settings)
    rules = load_rules(settings.rules)
    parts: dict[str, Any] = {}
    taps = load_taps(settings.taps,
                     on_vin=lambda vin, how: parts["assembly"].agent.report_vin(vin, how))
    needed = rules.needed_messages()
    decoder = Decoder(load_dbcs(settings.dbc, lenient_fallback=True), only_messages=needed)
    options: dict[str, Any] = {}
    if settings.interface == "replay":
        options.update(speed=settings.replay_speed, strict=settings.strict_logs,
                       start_at=settings.replay_start.timestamp()
                       if settings.replay_start is not None else None)
    else:
        options.update({"bitrate": settings.bitrate} if settings.bitrate else {})
        options.update({"fd": True} if settings.fd else {})
        if needed is not None and not taps:  # taps need every frame
            options["can_filters"] = decoder.can_filters(needed)
    spool = Spool(settings.spool_dir / settings.vehicle_id, max_bytes=settings.spool_max_bytes,
                  fsync=settings.spool_fsync, keep_unsent_bytes=KEEP_UNSENT_BYTES)
    source = open_source(settings.interface, settings.channel, **options)
    if isinstance(source, ReplaySource):
        done = spool.checkpoint(source.checkpoint_key)
        if done:
            log.info("resuming %s after frame %d (already in the spool)", settings.channel, done)
            source.skip(done)
    publisher = Publisher(
        spool, settings.broker_url, client_id=f"fleetcare-edge-{settings.vehicle_id}",
        health=Health(settings.vehicle_id, lambda: parts["assembly"].counters(),
                      settings.health_interval_s),
        tls=TlsFiles(settings.tls_ca, settings.tls_cert, settings.tls_key,
                     key_password=settings.tls_key_password, username=settings.mqtt_username,
                     password=settings.mqtt_password),
        reconnect_min_s=settings.reconnect_min_s, reconnect_max_s=settings.reconnect_max_s,
        receipts=Receipts(settings.vehicle_id, settings.receipt_timeout_s,
                          settings.receipt_timeout_max_s) if settings.receipts else None,
        quiet_first_connect=quiet_first_connect)
    agent = Agent(settings.vehicle_id, source, decoder, rules, spool, publisher,
                  batch_signals=settings.batch_signals,
                  batch_interval_s=settings.batch_interval_s, taps=taps,
                  identity=identity_of(settings.dbc, settings.rules))
    parts["assembly"] = Assembly(agent, source, spool, publisher, make_poller(settings))
    result: Assembly = parts["assembly"]
    return result


def make_poller(settings: EdgeSettings) -> Any:
    """The OBD-II poller ``poll_pids`` asks for (not started), or None.

    A recording cannot be asked anything, so a replay polls nothing.

    Raises:
        ConfigError: as :func:`check_polling`.
    """
    check_polling(settings)
    if not settings.poll_pids or settings.interface == "replay":
        return None
    module = importlib.import_module("edge.diag.poller")
    return module.BusPoller(settings.interface, settings.channel, settings.poll_pids,
                            every_s=settings.poll_every_s,
                            dtc_every_s=settings.poll_dtc_every_s)


def check_polling(settings: EdgeSettings) -> None:
    """Polling the settings ask for can run (checked before anything is opened).

    Raises:
        ConfigError: polling without the obd tap (nothing would hear the answers), or the
            diagnostics package is not installed.
    """
    if not settings.poll_pids or settings.interface == "replay":
        return
    if "obd" not in settings.taps:
        raise ConfigError("poll_pids asks the car for OBD-II PIDs, but the obd tap is off, so "
                          "no answer would be heard: add obd to taps")
    try:
        importlib.import_module("edge.diag.poller")
    except ModuleNotFoundError as exc:
        raise ConfigError(f"poll_pids needs the edge.diag.poller module, which is not "
                          f"available in this install ({exc})") from exc


def run_agent_forever(settings: EdgeSettings, stop: threading.Event, *,
                      notify_socket: str | None = None, watchdog_usec: int | None = None,
                      drain_timeout_s: float = 5.0) -> AgentStats:
    """Run one agent until ``stop`` is set (or its recording ends); return its final counters."""
    return run(settings, stop, notify_socket=notify_socket, watchdog_usec=watchdog_usec,
               drain_timeout_s=drain_timeout_s)[0]


def run(settings: EdgeSettings, stop: threading.Event, *, notify_socket: str | None = None,
        watchdog_usec: int | None = None,
        drain_timeout_s: float = 5.0) -> tuple[AgentStats, dict[str, float], bool]:
    """Run one agent; return its stats, its final counters and whether the spool drained.

    After the source ends or ``stop`` is set, waits up to ``drain_timeout_s`` for what is left
    to be receipted by the store (acknowledged by the broker, with receipts off); what is not
    stays in the spool for the next start.
    """
    settings = apply_profile(settings)
    parts = assemble(settings)
    parts.publisher.start()
    return _run_started(parts, settings, stop, notify_socket=notify_socket,
                        watchdog_usec=watchdog_usec, drain_timeout_s=drain_timeout_s)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """How a replay ended; ``completed`` and ``drained`` together mean nothing is left to do."""

    stats: AgentStats
    counters: dict[str, float]
    drained: bool
    """The spool emptied: the store receipted everything (the broker acknowledged it, with
    receipts off)."""
    completed: bool
    """The recordings were read to their end (False: stopped by a signal first)."""
    resumed_after: int
    """Frames an earlier, interrupted run had already spooled (0: read from the start)."""
    resent: int
    """Messages an earlier run left in the spool, sent again by this one."""


def run_replay(settings: EdgeSettings, stop: threading.Event, *,
               connect_timeout_s: float = 10.0, drain_timeout_s: float = 600.0,
               on_progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Replay recorded logs through one agent; resume after what the spool already holds.

    ``on_progress`` is called about twice a second, from a thread of its own, with the bytes
    of the recordings read so far (a progress bar).

    Raises:
        LogFormatError: the recordings hold no frame at all (nothing was spooled).
        BrokerUnreachableError: no connection within ``connect_timeout_s`` (nothing was read).
        ConfigError, DbcError, SpoolError: as :func:`assemble`.
    """
    settings = apply_profile(settings)
    parts = assemble(settings, quiet_first_connect=True)
    source = parts.source
    assert isinstance(source, ReplaySource)
    resumed_after, resent = source.position, parts.spool.stats().pending
    started = False
    try:
        if resumed_after:
            log.info("resuming after frame %d; %d messages from the last run wait to be sent",
                     resumed_after, resent)
        elif source.holds_no_frames(frame_by_frame=bool(settings.taps)):
            raise _no_frames(settings, source)
        parts.publisher.start()
        started = True
        if not parts.publisher.wait_connected(connect_timeout_s):
            why = parts.publisher.last_connect_error or "no answer"
            raise BrokerUnreachableError(
                f"broker {redact_url(settings.broker_url)} unreachable: {why} (no connection "
                f"within {connect_timeout_s:g} s)")
    except BaseException:
        if started:
            parts.publisher.stop()
        parts.source.shutdown()
        parts.spool.close()
        raise
    with _reporting(lambda: source.bytes_read, on_progress):
        stats, counters, drained = _run_started(parts, settings, stop,
                                                drain_timeout_s=drain_timeout_s)
    return ReplayResult(stats, counters, drained, source.exhausted, resumed_after, resent)


@contextlib.contextmanager
def _reporting(read: Callable[[], int], report: Callable[[int], None] | None,
               every_s: float = 0.5) -> Iterator[None]:
    """Call ``report(read())`` every ``every_s`` from a thread while the block runs, and once
    at its end (nothing at all without ``report``)."""
    if report is None:
        yield
        return
    done = threading.Event()

    def tick() -> None:
        while not done.wait(every_s):
            report(read())

    thread = threading.Thread(target=tick, name="replay-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        report(read())


def check_replay(settings: EdgeSettings) -> EdgeSettings:
    """Load everything a replay reads (rules, taps, DBCs, logs) without a spool or a broker;
    returns the settings the replay would run with (its profile applied).

    Raises:
        ConfigError, DbcError, LogFormatError: what :func:`run_replay` would raise for them.
    """
    settings = apply_profile(settings)
    load_rules(settings.rules)
    load_taps(settings.taps)
    load_dbcs(settings.dbc, lenient_fallback=True)
    source = open_source(settings.interface, settings.channel, speed=settings.replay_speed,
                         strict=settings.strict_logs)
    try:
        if isinstance(source, ReplaySource) and source.holds_no_frames(
                frame_by_frame=bool(settings.taps)):
            raise _no_frames(settings, source)
    finally:
        source.shutdown()
    return settings


def _no_frames(settings: EdgeSettings, source: ReplaySource) -> LogFormatError:
    malformed = source.counters.malformed
    return LogFormatError(
        f"CAN log {settings.channel.replace(',', ', ')} yielded no frames"
        + (f" ({malformed} malformed lines skipped, the first at "
           f"{source.counters.malformed_at[0]})" if malformed else ""))


def _run_started(parts: Assembly, settings: EdgeSettings, stop: threading.Event, *,
                 notify_socket: str | None = None, watchdog_usec: int | None = None,
                 drain_timeout_s: float) -> tuple[AgentStats, dict[str, float], bool]:
    """Run an assembled agent whose publisher is started; stop and close every part."""
    watchdog = Watchdog(notify_socket, watchdog_usec, progress=lambda: parts.agent.loops)
    log.info("agent %s reading %s:%s", settings.vehicle_id, settings.interface,
             settings.channel)
    drained = False
    try:
        watchdog.start()
        if parts.poller is not None:
            parts.poller.start()
            log.info("asking for OBD-II PIDs %s every %g s", " ".join(
                f"0x{p:02X}" for p in settings.poll_pids), settings.poll_every_s)
        parts.agent.run(stop)
        drained = parts.publisher.wait_drained(timeout=drain_timeout_s)
    finally:
        watchdog.stop()
        if parts.poller is not None:
            parts.poller.stop()
        parts.publisher.stop()
        parts.source.shutdown()
        counters = parts.counters()
        parts.spool.close()
    return parts.agent.stats(), counters, drained


def summary(stats: AgentStats, counters: dict[str, float], drained: bool) -> dict[str, Any]:
    """The one-line JSON summary ``edge run``/``edge replay`` print last."""
    return dataclasses.asdict(stats) | {"counters": counters, "drained": drained}


def replay_summary(result: ReplayResult) -> dict[str, Any]:
    """``edge replay``'s summary: :func:`summary` and how the replay ended or resumed."""
    return summary(result.stats, result.counters, result.drained) | {
        "completed": result.completed, "resumed_after_frame": result.resumed_after,
        "resent_messages": result.resent}
