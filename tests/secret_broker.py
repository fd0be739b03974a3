"""A real mosquitto that refuses anonymous clients, for the secrets tests.

``password_broker`` starts mosquitto with a ``password_file`` made by ``mosquitto_passwd`` on a
plain listener and, given a PKI directory, on a second TLS listener that also requires a
CA-signed client certificate. ``LoggingIngestor`` is the real ingest loop (which logs in with
its ``credentials``) with paho's own DEBUG log switched on, so that log is searched too.
"""

from __future__ import annotations

import getpass
import logging
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import duckdb
import paho.mqtt.client as mqtt
import pytest

from pipeline.broker.harness import find_mosquitto, free_port, wait_for_port
from pipeline.ingest.service import Ingestor
from pipeline.ingest.session import Connection, Session


@dataclass(frozen=True)
class PasswordBroker:
    """Where the broker listens; both listeners refuse anyone without a valid login."""

    port: int
    tls_port: int | None
    log: Path

    def url(self, username: str | None = None, password: str | None = None) -> str:
        """``mqtt://[user[:password]@]127.0.0.1:port``."""
        login = quote(username or "", safe="")
        if password is not None:
            login += ":" + quote(password, safe="")
        return f"mqtt://{login + '@' if login else ''}127.0.0.1:{self.port}"


def _conf(port: int, password_file: Path, tls_port: int | None, pki_dir: Path | None) -> str:
    lines = ["per_listener_settings true", f"user {getpass.getuser()}", "persistence false",
             "max_inflight_messages 10000", "max_queued_messages 1000000",
             "log_dest stderr", "log_type error", "log_type warning", "log_type notice",
             f"listener {port} 127.0.0.1", "allow_anonymous false",
             f"password_file {password_file}"]
    if tls_port is not None and pki_dir is not None:
        lines += [f"listener {tls_port} 127.0.0.1", "allow_anonymous false",
                  f"password_file {password_file}", f"cafile {pki_dir / 'ca.pem'}",
                  f"certfile {pki_dir / 'broker.pem'}", f"keyfile {pki_dir / 'broker.key'}",
                  "require_certificate true", "tls_version tlsv1.2"]
    return "\n".join(lines) + "\n"


@contextmanager
def password_broker(root: Path, users: dict[str, str],
                    pki_dir: Path | None = None) -> Iterator[PasswordBroker]:
    """Run mosquitto knowing ``users`` ({name: password}); skips the test without mosquitto.

    With ``pki_dir`` (holding ``ca.pem`` and a ``broker`` server certificate) a TLS listener
    is added. The broker's own log (stderr) is written to ``root/mosquitto.log``.
    """
    exe, passwd = find_mosquitto(), shutil.which("mosquitto_passwd")
    if exe is None or passwd is None:
        pytest.skip("needs mosquitto and mosquitto_passwd (Debian package mosquitto)")
    root.mkdir(parents=True, exist_ok=True)
    password_file = root / "passwords"
    for i, (name, password) in enumerate(users.items()):
        subprocess.run([passwd, *(["-c"] if i == 0 else []), "-b", str(password_file), name,
                        password], check=True, capture_output=True)
    port = free_port()
    tls_port = free_port() if pki_dir is not None else None
    conf = root / "mosquitto.conf"
    conf.write_text(_conf(port, password_file, tls_port, pki_dir), encoding="utf-8")
    log = root / "mosquitto.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([str(exe), "-c", str(conf)], stdout=sink, stderr=sink)
        try:
            for p in (port, tls_port):
                if p is not None:
                    assert wait_for_port("127.0.0.1", p, timeout=20), log.read_text()
            yield PasswordBroker(port, tls_port, log)
        finally:
            process.terminate()
            process.wait(timeout=10)


class LoggingIngestor(Ingestor):
    """The ingest loop with paho's packet-level DEBUG log on (it is searched for secrets)."""

    def _make_sessions(self, con: duckdb.DuckDBPyConnection,
                       connection: Connection) -> list[Session]:
        sessions = super()._make_sessions(con, connection)
        for session in sessions:  # both sessions' paho clients log, before they connect
            session._make_client = _logging(session._make_client)  # type: ignore[method-assign]
        return sessions


def _logging(make: Callable[[], mqtt.Client]) -> Callable[[], mqtt.Client]:
    """``make`` whose clients log paho's DEBUG lines (they are searched for secrets too)."""
    def logged() -> mqtt.Client:
        client = make()
        client.enable_logger(logging.getLogger("paho.ingest"))
        return client
    return logged
