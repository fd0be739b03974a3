"""The one-machine MQTT broker: mosquitto when installed, else amqtt embedded in a thread.

The demo, CI and a single-box deployment need a broker without anyone installing or
configuring one. mosquitto is preferred because it is fast and because its persistent
sessions really queue QoS 1 messages for an offline subscriber, which the ingest's
exactly-once guarantee relies on (docs/design.md, measured facts); amqtt only keeps the demo
running where mosquitto is missing.

mosquitto gets the same queue, size and persistence limits as the mutual-TLS broker
(:mod:`pipeline.broker.limits`: sessions saved every second, a queue sized for an ingest
outage, the contract's message size) and, started by root, runs as the ``mosquitto`` account
with its data directory handed to it (:mod:`pipeline.broker.account`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

from pipeline.broker.account import (
    Account,
    current_account,
    default_broker_account,
    hand_over,
    unreachable,
)
from pipeline.broker.counters import DropWatcher
from pipeline.broker.limits import DEFAULT_LIMITS, BrokerLimits, durability_config
from pipeline.errors import BrokerError
from pipeline.foreground import run_until_terminated

log = logging.getLogger(__name__)

BrokerKind = Literal["mosquitto", "amqtt"]
MOSQUITTO_FALLBACK: Final = Path("/usr/sbin/mosquitto")
"""Debian installs mosquitto outside a normal user's PATH."""
START_TIMEOUT_S: Final = 10.0
WATCHER_START_TIMEOUT_S: Final = 30.0
"""Generous: on a loaded machine a CONNACK took seconds (the watcher has a minute at most)."""

_LISTENER_CONF: Final = """\
# fleetcare one-machine broker (pipeline/broker/harness.py): plain MQTT on 127.0.0.1 only,
# anonymous, so no certificate identity binds client ids here; a broker other machines reach
# is the mutual-TLS one `fleetcare pki broker-config` writes.
listener {port} 127.0.0.1
# mosquitto started as root drops to this user before it opens its data directory.
user {user}
allow_anonymous true
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
"""


def mosquitto_config(port: int, data_dir: Path, user: str,
                     limits: BrokerLimits = DEFAULT_LIMITS) -> str:
    """The one-machine broker's mosquitto.conf: the listener, then :mod:`.limits`' lines."""
    return (_LISTENER_CONF.format(port=port, user=user)
            + durability_config(limits, data_dir))


def find_mosquitto() -> Path | None:
    """The mosquitto executable on PATH or at Debian's /usr/sbin location, if any."""
    found = shutil.which("mosquitto")
    if found:
        return Path(found)
    return MOSQUITTO_FALLBACK if MOSQUITTO_FALLBACK.is_file() else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int) -> None:
    """Refuse to start a broker on a port another process already listens on.

    Without this, the readiness probe below would connect to *that* process and report a
    broker that exited at once ("Address already in use") as started.

    Raises:
        BrokerError: something listens on ``127.0.0.1:port`` (or the port is not allowed).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As mosquitto binds: a port left in TIME_WAIT by a broker that just stopped is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise BrokerError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc} "
                              f"(another broker or service has it? choose another port)"
                              ) from None


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Poll until ``host:port`` accepts a TCP connection or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
    return False


def _run_as(data_dir: Path) -> Account:
    """Who mosquitto runs as: its own account when root starts it and that account can reach
    ``data_dir`` (handed over to it, with any earlier persistence file), else the caller.

    The fallback keeps persistence working in a directory only root may enter (pytest's
    ``tmp_path`` is one) instead of a broker that starts but can never save; it is logged.
    """
    me = current_account()
    who = default_broker_account()
    if who.uid == me.uid:
        return me
    owners = {path: path.stat() for path in [data_dir, *data_dir.glob("mosquitto.db*")]}
    for path in owners:
        hand_over(path, who)
    reason = unreachable(data_dir, who, write=True)
    if reason is None:
        return who
    for path, info in owners.items():  # given back: the broker runs as the caller after all
        os.chown(path, info.st_uid, info.st_gid)
    log.warning("mosquitto runs as %s, not %s: %s; give the broker a data directory %s can "
                "reach", me.name, who.name, reason, who.name)
    return me


class _MosquittoProcess:
    """mosquitto as a child process with a generated config in its own data directory."""

    def __init__(self, exe: Path, port: int, data_dir: Path, limits: BrokerLimits) -> None:
        self._exe, self._port, self._data_dir, self._limits = exe, port, data_dir, limits
        self._proc: subprocess.Popen[bytes] | None = None
        self.user: str | None = None

    @property
    def pid(self) -> int | None:
        """The mosquitto process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        who = _run_as(self._data_dir)
        self.user = who.name
        conf = self._data_dir / "mosquitto.conf"
        conf.write_text(mosquitto_config(self._port, self._data_dir, who.name, self._limits))
        log_path = self._data_dir / "mosquitto.log"
        with log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(
                [str(self._exe), "-c", str(conf)], stdout=log_file, stderr=log_file,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if wait_for_port("127.0.0.1", self._port, 0.2):
                return
        self.stop()
        tail = log_path.read_text(errors="replace")[-2000:]
        raise BrokerError(f"mosquitto did not start on port {self._port}: {tail.strip()}")

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


class _AmqttThread:
    """amqtt's asyncio broker on its own event loop in a daemon thread."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._broker: Any = None
        self._thread = threading.Thread(target=self._run, name="amqtt-broker", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self._port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                        {"allow_anonymous": True}},
        }

    async def _boot(self) -> None:
        from amqtt.broker import Broker  # optional backend dependency, imported when used

        self._broker = Broker(self._config(), loop=self._loop)
        await self._broker.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._boot())
        except BaseException as exc:  # reported to the starting thread, not swallowed
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.close()

    def start(self) -> None:
        self._thread.start()
        # Broker.start() returns once the listener is bound; a TCP probe would only make
        # amqtt log a bogus "failed to initialize client session".
        if not self._started.wait(START_TIMEOUT_S) or self._error is not None:
            raise BrokerError(f"amqtt did not start on port {self._port}: {self._error!r}")

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._broker is not None:
            done = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                done.result(timeout=5)
            except Exception as exc:  # a broken shutdown must not hide the caller's error
                log.warning("amqtt shutdown failed: %r", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


class EmbeddedBroker:
    """A local MQTT broker on 127.0.0.1 for the demo, CI and one-machine deployments.

    Args:
        port: TCP port to listen on; None picks a free one.
        prefer: "auto" (mosquitto when found, else amqtt), "mosquitto" or "amqtt".
        data_dir: where mosquitto keeps its config and persistence file; None uses a
            temporary directory removed on stop (queued messages then die with the broker).
        limits: mosquitto's queue, size and persistence settings (:mod:`.limits`); the
            default is what ``fleetcare broker`` runs, so tests run the production values.
    """

    def __init__(self, port: int | None = None, prefer: str = "auto",
                 data_dir: str | Path | None = None,
                 limits: BrokerLimits = DEFAULT_LIMITS) -> None:
        if prefer not in ("auto", "mosquitto", "amqtt"):
            raise BrokerError(f"prefer={prefer!r}: use 'auto', 'mosquitto' or 'amqtt'")
        self._requested_port, self._prefer, self._limits = port, prefer, limits
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._impl: _MosquittoProcess | _AmqttThread | None = None
        self._watcher: DropWatcher | None = None
        self._kind: BrokerKind | None = None
        self._port: int | None = None

    @property
    def kind(self) -> BrokerKind:
        """Which broker runs: "mosquitto" or "amqtt"."""
        if self._kind is None:
            raise BrokerError("the broker is not started")
        return self._kind

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT`` of the running broker."""
        if self._port is None:
            raise BrokerError("the broker is not started")
        return f"mqtt://127.0.0.1:{self._port}"

    @property
    def mosquitto_pid(self) -> int | None:
        """mosquitto's process id while it runs (None for amqtt), e.g. to ``kill -9`` it."""
        return self._impl.pid if isinstance(self._impl, _MosquittoProcess) else None

    @property
    def mosquitto_user(self) -> str | None:
        """The user the running mosquitto's configuration names (None for amqtt)."""
        return self._impl.user if isinstance(self._impl, _MosquittoProcess) else None

    def start(self) -> EmbeddedBroker:
        """Start the broker and return once it accepts TCP connections.

        Raises:
            BrokerError: mosquitto was required but not found, or the broker did not start.
        """
        exe = find_mosquitto() if self._prefer != "amqtt" else None
        if self._prefer == "mosquitto" and exe is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        port = self._requested_port or free_port()
        check_port_free(port)
        if exe is not None:
            self._impl = _MosquittoProcess(exe, port, self._mosquitto_dir(), self._limits)
            self._kind = "mosquitto"
        else:
            self._impl = _AmqttThread(port)
            self._kind = "amqtt"
        try:
            self._impl.start()
        except BrokerError:
            self.stop()
            raise
        self._port = port
        if self._kind == "mosquitto":
            self._watch_drops()
        log.info("started %s broker at mqtt://127.0.0.1:%d", self._kind, port)
        return self

    def _watch_drops(self) -> None:
        """Keep mosquitto's drop counter readable for the health check (its ``$SYS`` value
        expires a minute after each change); a broker without a watcher still serves."""
        watcher = DropWatcher(self.url)
        try:
            self._watcher = watcher.start(WATCHER_START_TIMEOUT_S)
        except BrokerError as exc:
            log.warning("no drop watcher on %s (the health check then sees only drops of "
                        "the last minute): %s", self.url, exc)

    def _mosquitto_dir(self) -> Path:
        if self._data_dir is not None:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            return self._data_dir.resolve()
        self._tmp = tempfile.TemporaryDirectory(prefix="fleetcare-mosquitto-")
        return Path(self._tmp.name)

    def stop(self) -> None:
        """Stop the broker (idempotent) and remove its temporary directory."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._impl is not None:
            self._impl.stop()
            self._impl = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._port = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve_forever(port: int | None, prefer: str = "auto",
                  data_dir: str | Path | None = None,
                  limits: BrokerLimits = DEFAULT_LIMITS) -> None:
    """Run an :class:`EmbeddedBroker` until SIGINT or SIGTERM (for ``fleetcare broker``).

    Raises:
        BrokerError: the broker did not start.
    """
    run_until_terminated(EmbeddedBroker(port=port, prefer=prefer, data_dir=data_dir,
                                        limits=limits))
