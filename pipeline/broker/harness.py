"""The one-machine MQTT broker: mosquitto when installed, else amqtt embedded in a thread.

The demo, CI and a single-box deployment need a broker without anyone installing or
configuring one. mosquitto is preferred because it is fast and because its persistent
sessions really queue QoS 1 messages for an offline subscriber, which the ingest's
exactly-once guarantee relies on (docs/design.md, measured facts); amqtt only keeps the demo
running where mosquitto is missing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

from pipeline.errors import BrokerError
from pipeline.foreground import run_until_terminated

log = logging.getLogger(__name__)

BrokerKind = Literal["mosquitto", "amqtt"]
MOSQUITTO_FALLBACK: Final = Path("/usr/sbin/mosquitto")
"""Debian installs mosquitto outside a normal user's PATH."""
START_TIMEOUT_S: Final = 10.0

# The ingest acks only after COMMIT, so a whole batch is unacknowledged at once: the
# in-flight window must hold a batch, and the queue must hold what arrives while the
# ingest is down (mosquitto's defaults are 20 and 1000; beyond the queue it drops).
#
# Run as root, mosquitto drops privileges to the "mosquitto" user, which cannot write a data
# directory made by the caller: persistence then fails ("Permission denied") and every
# session dies with the broker. "user" names the caller, so it stays who started it.
_MOSQUITTO_CONF: Final = """\
listener {port} 127.0.0.1
user {user}
allow_anonymous true
persistence true
persistence_location {data_dir}/
autosave_interval 60
max_inflight_messages 10000
max_queued_messages 1000000
max_queued_bytes 0
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
"""


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


class _MosquittoProcess:
    """mosquitto as a child process with a generated config in its own data directory."""

    def __init__(self, exe: Path, port: int, data_dir: Path) -> None:
        self._exe, self._port, self._data_dir = exe, port, data_dir
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = self._data_dir / "mosquitto.conf"
        conf.write_text(_MOSQUITTO_CONF.format(port=self._port, data_dir=self._data_dir,
                                               user=pwd.getpwuid(os.getuid()).pw_name))
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
    """

    def __init__(self, port: int | None = None, prefer: str = "auto",
                 data_dir: str | Path | None = None) -> None:
        if prefer not in ("auto", "mosquitto", "amqtt"):
            raise BrokerError(f"prefer={prefer!r}: use 'auto', 'mosquitto' or 'amqtt'")
        self._requested_port, self._prefer = port, prefer
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._impl: _MosquittoProcess | _AmqttThread | None = None
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
            self._impl = _MosquittoProcess(exe, port, self._mosquitto_dir())
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
        log.info("started %s broker at mqtt://127.0.0.1:%d", self._kind, port)
        return self

    def _mosquitto_dir(self) -> Path:
        if self._data_dir is not None:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            return self._data_dir.resolve()
        self._tmp = tempfile.TemporaryDirectory(prefix="fleetcare-mosquitto-")
        return Path(self._tmp.name)

    def stop(self) -> None:
        """Stop the broker (idempotent) and remove its temporary directory."""
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
                  data_dir: str | Path | None = None) -> None:
    """Run an :class:`EmbeddedBroker` until SIGINT or SIGTERM (for ``fleetcare broker``).

    Raises:
        BrokerError: the broker did not start.
    """
    run_until_terminated(EmbeddedBroker(port=port, prefer=prefer, data_dir=data_dir))
