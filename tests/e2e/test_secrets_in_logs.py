"""No secret leaks: a full run at DEBUG, then every log, output and the store searched for each.

The run uses every secret the system has, each a fresh random value, each in its own way:

* the CA key password (a secret file) encrypts ``ca.key`` in ``fleetcare -vv pki init`` and
  opens it for ``issue``; the gateway's client key is encrypted with another password (a file);
* a mosquitto with a ``password_file`` (made by ``mosquitto_passwd``) refuses anonymous
  clients on both its listeners; its TLS listener also requires a CA-signed certificate;
* a real agent process (``fleetcare -vv edge replay``) logs in over TLS with its encrypted key
  (password in ``FLEETCARE_EDGE__TLS_KEY_PASSWORD``) and its MQTT password (a secret file);
* simulated vehicles (``run_fleet``) log in with credentials embedded in the broker URL;
* the ingest loop logs in with ``FLEETCARE_PIPELINE__MQTT_PASSWORD_FILE`` (through
  ``Ingestor(credentials=...)``, as `fleetcare ingest` does);
* the Prefect maintenance flow signs leads with the CRM secret (a file) to a reference CRM that
  validates them, and the CRM signs an advisor's status update back to the inbound endpoint.

Then each secret, and its hex, base64 and URL-encoded forms (for the webhook key also the raw
key bytes), must appear in none of: the captured Python log records (root and Prefect loggers,
at DEBUG), this process's stdout/stderr, the child processes' stdout/stderr, the broker's log,
the logs, flow-run parameters and states stored by the Prefect API, the DuckDB store (every
table, and the file's bytes), the agents' spools, the inbox, and what the CRM stored.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest

from edge.config import REFERENCE_RULES
from edge.rules import load_rules
from edge.sim.fleet import run_fleet
from edge.sim.masterdata import SimVehicle, vehicles_of, write_master_data
from edge.sim.simulator import VehicleSpec
from pipeline.broker.auth import credentials_from_settings
from pipeline.config import load_pipeline_settings
from pipeline.crm.inbound import INBOUND_PATH, Inbox, inbound_server
from pipeline.fleet import import_fleet
from pipeline.leads.lifecycle import apply_inbound
from pipeline.sandbox.reference_crm import CrmReceiver
from pipeline.store import connection as store
from tests.secret_broker import LoggingIngestor, password_broker

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
LOG = SHARED / "can" / "subaru_wrx" / "cruise.log"
DBC = SHARED / "dbc" / "subaru_outback_2015_generated.dbc"
START = (dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
         - dt.timedelta(days=40)).timestamp()
"""The simulated 40 days end today: the flow advises on the real date, and leads on evidence
older than evidence_max_age_days would be held, not sent."""
FLEET = [
    VehicleSpec("SEC-EV", "ev", "central", seed=21, battery_soh=71.5),
    VehicleSpec("SEC-ICE", "ice", "south", seed=22, pad_wear=93.0),
    VehicleSpec("SEC-OK", "ev", "south", seed=23, battery_soh=99.0, pad_wear=5.0),
]


@dataclass(frozen=True)
class Secrets:
    """One fresh value per secret (URL-safe, so the URL form is the value itself)."""

    crm_key: bytes
    ca_key_password: str
    gateway_key_password: str
    gateway_mqtt: str
    sim_mqtt: str
    ingest_mqtt: str

    @property
    def crm_secret(self) -> str:
        return "whsec_" + base64.b64encode(self.crm_key).decode()

    def forms(self) -> dict[str, dict[str, bytes]]:
        """Each secret's name and every form it could leak in, by the form's name."""
        found: dict[str, dict[str, bytes]] = {}
        for name in ("ca_key_password", "gateway_key_password", "gateway_mqtt", "sim_mqtt",
                     "ingest_mqtt", "crm_secret"):
            text: str = getattr(self, name)
            raw = text.encode()
            found[name] = {"as is": raw, "hex": raw.hex().encode(),
                           "base64": base64.b64encode(raw),
                           "URL-encoded": quote(text, safe="").encode()}
        found["crm_key"] = {"base64": base64.b64encode(self.crm_key), "raw bytes": self.crm_key,
                            "hex": self.crm_key.hex().encode(),
                            "URL-safe base64": base64.urlsafe_b64encode(self.crm_key)}
        return found

    @classmethod
    def fresh(cls) -> Secrets:
        def word(tag: str) -> str:
            return f"{tag}-{secrets.token_hex(12)}"

        return cls(secrets.token_bytes(24), word("ca"), word("gwkey"), word("gwmqtt"),
                   word("simmqtt"), word("ingmqtt"))


class Recorder(logging.Handler):
    """Every record, formatted with its arguments and any traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Record the root and the Prefect loggers (which do not propagate) at DEBUG."""
    handler = Recorder()
    loggers = [logging.getLogger(), logging.getLogger("prefect")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield handler
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


def _secret_file(directory: Path, name: str, value: str) -> str:
    path = directory / name
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def _cli(outputs: list[str], *args: str, env: dict[str, str] | None = None) -> str:
    """``fleetcare -vv ARGS`` as its own process; its stdout and stderr go to ``outputs``."""
    done = subprocess.run([sys.executable, "-m", "flows.cli", "-vv", *args], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=300)
    outputs += [done.stdout, done.stderr]
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _store_dump(db_path: Path) -> bytes:
    """Every row of every table, as text, plus the store's raw bytes."""
    parts: list[bytes] = []
    with store.connect_readonly(db_path) as con:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"').fetchall():
                parts += [v if isinstance(v, bytes) else str(v).encode() for v in row]
    parts.append(db_path.read_bytes())
    return b"\n".join(parts)


def _prefect_api() -> tuple[str, str]:
    """What the Prefect API stored: every log message; flow runs' parameters and states."""
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # send what is queued, wait for it
    with get_client(sync_client=True) as client:
        logs = "\n".join(log.message for log in client.read_logs())
        runs = "\n".join(f"{run.name} {run.parameters} {run.state}"
                         for run in client.read_flow_runs())
    return logs, runs


def crm_url_seen(runs: bytes, crm_url: str) -> bool:
    """The maintenance run's parameters were read back (so that search means something)."""
    return crm_url.encode() in runs


def _files(root: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_no_secret_reaches_logs_outputs_or_the_store(
    tmp_path: Path, db_path: Path, prefect_harness: None, recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    if not LOG.is_file():
        pytest.skip(f"shared CAN log {LOG} is not on this machine")
    sec = Secrets.fresh()
    vault = tmp_path / "secrets"
    vault.mkdir()
    monkeypatch.setenv("FLEETCARE_PIPELINE__CA_KEY_PASSWORD_FILE",
                       _secret_file(vault, "ca", sec.ca_key_password))
    monkeypatch.setenv("FLEETCARE_PIPELINE__CRM_SECRET_FILE",
                       _secret_file(vault, "crm", sec.crm_secret))
    monkeypatch.setenv("FLEETCARE_PIPELINE__MQTT_USERNAME", "ingest")
    monkeypatch.setenv("FLEETCARE_PIPELINE__MQTT_PASSWORD_FILE",
                       _secret_file(vault, "ingest", sec.ingest_mqtt))
    outputs: list[str] = []

    ca = tmp_path / "ca"
    _cli(outputs, "pki", "init", str(ca))
    _cli(outputs, "pki", "issue", str(ca), "broker", "--server", "127.0.0.1")
    _cli(outputs, "pki", "issue", str(ca), "GW1", "--key-password-file",
         _secret_file(vault, "gwkey", sec.gateway_key_password))
    assert b"ENCRYPTED PRIVATE KEY" in (ca / "ca.key").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in (ca / "GW1.key").read_bytes()

    # ingest admits registered vehicles only; leads name the DMS's (consenting) customers
    dealer = write_master_data(tmp_path / "dms", [SimVehicle("GW1", "subaru-wrx", "central"),
                                                  *vehicles_of(FLEET)],
                               seed=0, start=dt.datetime.now(dt.UTC).date())
    with store.connect(db_path) as con:
        import_fleet(con, dealer)
    users = {"ingest": sec.ingest_mqtt, "GW1": sec.gateway_mqtt, "SIM": sec.sim_mqtt}
    with password_broker(tmp_path / "broker", users, pki_dir=ca) as broker:
        settings = load_pipeline_settings()
        ingestor = LoggingIngestor(broker.url(), db_path, client_id=f"sec-ingest-{tmp_path.name}",
                                credentials=credentials_from_settings(settings))
        ingestor.start()
        try:
            fleet = run_fleet(FLEET, broker.url("SIM", sec.sim_mqtt), load_rules(REFERENCE_RULES),
                              days=40, start_ts=START, spool_dir=tmp_path / "spool",
                              snapshot_s=0.25)
            edge_env = {
                "FLEETCARE_EDGE__TLS_CA": str(ca / "ca.pem"),
                "FLEETCARE_EDGE__TLS_CERT": str(ca / "GW1.pem"),
                "FLEETCARE_EDGE__TLS_KEY": str(ca / "GW1.key"),
                "FLEETCARE_EDGE__TLS_KEY_PASSWORD": sec.gateway_key_password,
                "FLEETCARE_EDGE__MQTT_USERNAME": "GW1",
                "FLEETCARE_EDGE__MQTT_PASSWORD_FILE": _secret_file(vault, "gw",
                                                                   sec.gateway_mqtt),
            }
            replay = orjson.loads(_cli(
                outputs, "edge", "replay", str(LOG), "--dbc", str(DBC), "--broker",
                f"mqtts://127.0.0.1:{broker.tls_port}", "--vehicle", "GW1", "--spool-dir",
                str(tmp_path / "gw-spool"), "--taps", "", env=edge_env).splitlines()[-1])
            assert replay["drained"] is True and replay["signals_spooled"] > 0
            expected = fleet.signals_spooled + replay["signals_spooled"]
            assert ingestor.wait_for(lambda s: s.telemetry_rows >= expected, timeout=120), (
                expected, fleet.signals_spooled, replay, ingestor.stats)
        finally:
            ingestor.stop()
        broker_log = broker.log.read_text()

    from flows.demo.maintenance import maintenance_flow

    inbox = Inbox(tmp_path / "inbox" / "status.jsonl")
    secret = settings.crm_secret.get_secret_value()
    with inbound_server(secret, inbox) as inbound, \
            CrmReceiver(secret, validate=True,
                        status_url=inbound.base_url + INBOUND_PATH) as crm:
        crm_url = crm.url
        result = maintenance_flow(str(db_path), crm_url, horizon_days=30, seed=0)
        received = crm.leads()
        assert received and result["delivery"]["delivered"] == len(received)
        assert crm.rejected_count == 0  # every lead passed signature, timestamp and schema
        status, answer = crm.set_status(received[0]["lead_id"], "acknowledged")
        assert status == 200, answer
    with store.connect(db_path) as con:
        assert apply_inbound(con, inbox).applied == 1

    captured = capfd.readouterr()
    api_logs, api_runs = _prefect_api()
    haystacks: dict[str, bytes] = {
        "log records": "\n".join(recorder.lines).encode(),
        "stdout/stderr": (captured.out + captured.err).encode(),
        "child processes": "\n".join(outputs).encode(),
        "mosquitto log": broker_log.encode(),
        "prefect API logs": api_logs.encode(),
        "prefect flow runs": api_runs.encode(),
        "DuckDB store": _store_dump(db_path),
        "spools": _files(tmp_path / "spool") + _files(tmp_path / "gw-spool"),
        "inbox": _files(tmp_path / "inbox"),
        "CRM deliveries": json.dumps(received).encode(),
    }
    assert any("DEBUG" in line for line in recorder.lines)  # the run really logged at DEBUG
    assert any("DEBUG" in o for o in outputs)
    assert b"Finished in state" in haystacks["prefect API logs"]  # the flow's logs are there
    assert crm_url_seen(haystacks["prefect flow runs"], crm_url)  # and its parameters
    leaks = [f"{name} ({kind}) in {where}"
             for name, forms in sec.forms().items() for kind, form in forms.items()
             for where, hay in haystacks.items() if form in hay]
    assert not leaks, leaks
