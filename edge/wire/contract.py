"""The wire contract between edge agents and the backend: MQTT topics and payload schema.

Everything that crosses the broker is described here and nowhere else, so the backend can
import this one module of ``edge`` and stay independent of the agent's internals.

Payloads are JSON (encoded with orjson) and always carry ``schema`` (the version of this
contract), ``kind``, ``msg_id`` (unique per message; the backend lands each id at most once)
and ``vehicle_id``. Telemetry is columnar: three parallel arrays ``ts``, ``signal``, ``value``,
so one message carries hundreds of signals at the cost of a few kilobytes.

Topics (``{v}`` is the vehicle id)::

    fleetcare/v1/vehicles/{v}/telemetry   kind="telemetry"  batched signal samples
    fleetcare/v1/vehicles/{v}/dtc         kind="dtc"        fault-code events
    fleetcare/v1/vehicles/{v}/health      kind="health"     agent counters; also its last will
    fleetcare/v1/vehicles/{v}/info        kind="vehicle_info"  VIN, agent version, fingerprints
    fleetcare/v1/sim/{v}/truth            kind="truth"      simulator ground truth (CI, demo)
    fleetcare/v1/vehicles/{v}/receipt     kind="receipt"    backend -> vehicle: what is stored

Receipts are the one message that travels the other way. After each commit the backend
publishes, per vehicle, the ``msg_id`` of every message of that vehicle the commit made
durable, sorted into ``landed`` (new rows), ``duplicates`` (had landed before: a re-send) and
``dead_lettered`` (kept in the dead-letter table with its reason). An agent deletes a spooled
message only when a receipt names it; the broker's PUBACK proves only that the broker holds
the message in memory. Receipts carry the same ``schema`` version as everything else: the
kind was added without changing any existing payload, so schema-1 agents and backends that
do not know it still understand each other (an agent facing a backend that sends no receipts
must run with receipts off, deleting on PUBACK as before).

Vehicle info was added the same way: an agent says, at its start and whenever it reads a
VIN it has not reported yet, which vehicle it is plugged into (the VIN, absent until
read, and how it was read), which agent version runs, and which DBC and rules files it decodes
with (their SHA-256), so the backend can tell a gateway moved to another car from one whose
configuration changed. A backend that predates the kind dead-letters it as unknown; nothing
else changes for it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from edge.errors import ContractError
from edge.wire.vin import vin_problem

SCHEMA_VERSION: Final = 1
TOPIC_ROOT: Final = "fleetcare/v1"
MAX_PAYLOAD_BYTES: Final = 1_000_000
"""Messages larger than this are refused by the backend (dead-lettered as oversize)."""

DTC_STATUSES: Final = ("stored", "pending", "permanent", "active")
COMPONENTS: Final = ("traction_battery", "lv_battery", "brakes")
"""Components whose failure fleetcare predicts; ground truth and leads use these names."""

VIN_SOURCES: Final = ("obd_mode09", "j1939_feec", "none")
"""How an agent read the VIN it reports: OBD-II mode 09 PID 02, J1939 PGN 0xFEEC, or not (yet)."""
MAX_VERSION_CHARS: Final = 64

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_VEHICLE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_J2012 = re.compile(r"^[PCBU][0-3][0-9A-F]{3}$")


def telemetry_topic(vehicle_id: str) -> str:
    """Topic an agent publishes batched telemetry on."""
    return f"{TOPIC_ROOT}/vehicles/{_checked_vehicle_id(vehicle_id)}/telemetry"


def dtc_topic(vehicle_id: str) -> str:
    """Topic an agent publishes fault-code events on."""
    return f"{TOPIC_ROOT}/vehicles/{_checked_vehicle_id(vehicle_id)}/dtc"


def health_topic(vehicle_id: str) -> str:
    """Topic an agent publishes its health counters (and its last will) on."""
    return f"{TOPIC_ROOT}/vehicles/{_checked_vehicle_id(vehicle_id)}/health"


def vehicle_info_topic(vehicle_id: str) -> str:
    """Topic an agent publishes what it knows about itself and its vehicle on (the VIN)."""
    return f"{TOPIC_ROOT}/vehicles/{_checked_vehicle_id(vehicle_id)}/info"


def truth_topic(vehicle_id: str) -> str:
    """Topic the simulator publishes a vehicle's ground truth on."""
    return f"{TOPIC_ROOT}/sim/{_checked_vehicle_id(vehicle_id)}/truth"


def receipt_topic(vehicle_id: str) -> str:
    """Topic the backend publishes a vehicle's receipts on (the vehicle only reads it)."""
    return f"{TOPIC_ROOT}/vehicles/{_checked_vehicle_id(vehicle_id)}/receipt"


RECEIPT_TOPICS: Final = f"{TOPIC_ROOT}/vehicles/+/receipt"
"""Topic filter of every vehicle's receipt topic (what the backend may write)."""
MAX_RECEIPT_BYTES: Final = 256 * 1024
"""A receipt's message ids take at most about this many bytes; more ids go in more receipts."""


INGEST_TOPICS: Final = (
    f"{TOPIC_ROOT}/vehicles/+/telemetry",
    f"{TOPIC_ROOT}/vehicles/+/dtc",
    f"{TOPIC_ROOT}/vehicles/+/health",
    f"{TOPIC_ROOT}/vehicles/+/info",
    f"{TOPIC_ROOT}/sim/+/truth",
)
"""Topic filters the ingest process subscribes to."""


def vehicle_of_topic(topic: str) -> str | None:
    """The vehicle id in a contract topic, or None when the topic is not ours."""
    parts = topic.split("/")
    if len(parts) == 5 and "/".join(parts[:2]) == TOPIC_ROOT and parts[2] in ("vehicles", "sim"):
        return parts[3]
    return None


def _checked_vehicle_id(vehicle_id: str) -> str:
    if not _VEHICLE_ID.match(vehicle_id):
        raise ContractError(
            f"vehicle id {vehicle_id!r} is invalid: use 1-64 letters, digits, '_', '.' or '-'"
        )
    return vehicle_id


@dataclass(frozen=True, slots=True)
class TelemetryBatch:
    """Many signal samples of one vehicle, columnar. ``ts`` is Unix time in seconds."""

    msg_id: str
    vehicle_id: str
    ts: list[float]
    signal: list[str]
    value: list[float]

    def __post_init__(self) -> None:
        if not (len(self.ts) == len(self.signal) == len(self.value)):
            raise ContractError(
                f"telemetry {self.msg_id}: ts, signal and value must have the same length "
                f"(got {len(self.ts)}, {len(self.signal)}, {len(self.value)})"
            )


@dataclass(frozen=True, slots=True)
class DtcEvent:
    """One fault code seen (or cleared) on a vehicle.

    ``code`` is upper-case SAE J2012 (``P0A80``) or ``SPN:FMI`` for J1939; ``source`` says how
    it was read (``can`` broadcast, ``obd`` request, ``j1939``, ``uds``); ``first_seen`` and
    ``last_seen`` (Unix seconds) span the agent's sightings; ``description`` is the agent's
    text for the code, empty when it has none.
    """

    ts: float
    code: str
    status: str
    ecu: str = ""
    source: str = "can"
    cleared: bool = False
    first_seen: float | None = None
    last_seen: float | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class HealthReport:
    """An agent's counters, sent periodically and, with ``online`` false, as its last will.

    ``counters`` holds at least frames_received, frames_decoded, unknown_frames, filtered,
    invalid_signals, published, spool_bytes, evicted and reconnects; agents may add more
    (with receipts: sent, receipted, resent, awaiting_receipt and dead_lettered).
    """

    msg_id: str
    vehicle_id: str
    ts: float
    online: bool
    counters: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DtcBatch:
    """Fault-code events of one vehicle."""

    msg_id: str
    vehicle_id: str
    events: list[DtcEvent]


@dataclass(frozen=True, slots=True)
class ComponentTruth:
    """When a simulated component really fails (``failure_ts`` None: not within the horizon)."""

    component: str
    failure_ts: float | None
    health_at_end: float


@dataclass(frozen=True, slots=True)
class TruthRecord:
    """Ground truth the simulator publishes once per vehicle, for scoring models."""

    msg_id: str
    vehicle_id: str
    model: str
    region: str
    sim_start_ts: float
    sim_end_ts: float
    components: list[ComponentTruth] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class VehicleInfo:
    """What an agent knows about the vehicle it is plugged into and about itself.

    ``vin`` is None until the agent has read one (``vin_source`` is then ``none``); otherwise
    it is 17 valid VIN characters (the check digit is not required: most of the world has
    none) and ``vin_source`` says how it was read. ``dbc_fingerprints`` maps each DBC file's
    name to the hex SHA-256 of its contents, ``rules_fingerprint`` is that of the collection
    rules file; ``ts`` is when the agent read the VIN (its frame's time) or started.

    Raises:
        ContractError: a field breaks these rules; the message says which and why.
    """

    msg_id: str
    vehicle_id: str
    ts: float
    vin: str | None
    vin_source: str
    agent_version: str
    dbc_fingerprints: dict[str, str] = field(default_factory=dict)
    rules_fingerprint: str = ""

    def __post_init__(self) -> None:
        problem = _vehicle_info_problem(self)
        if problem is not None:
            raise ContractError(f"vehicle info {self.msg_id}: {problem}")


def _vehicle_info_problem(info: VehicleInfo) -> str | None:
    problem = _vin_problem(info.vin, info.vin_source)
    if problem is not None:
        return problem
    if not isinstance(info.agent_version, str) or not (
            0 < len(info.agent_version) <= MAX_VERSION_CHARS):
        return f"agent_version must be a string of 1-{MAX_VERSION_CHARS} characters"
    fingerprints = [*info.dbc_fingerprints.values(), info.rules_fingerprint or "0" * 64]
    if not all(isinstance(f, str) and _SHA256.match(f) for f in fingerprints):
        return "fingerprints must be hex SHA-256 digests (64 lower-case hex characters)"
    if not all(isinstance(name, str) and name for name in info.dbc_fingerprints):
        return "dbc_fingerprints must be keyed by non-empty file names"
    return None


def _vin_problem(vin: str | None, source: str) -> str | None:
    if source not in VIN_SOURCES:
        return f"vin_source {source!r} is not one of {', '.join(VIN_SOURCES)}"
    if vin is None:
        return None if source == "none" else (
            f"vin is absent but vin_source is {source!r} (an absent VIN has source 'none')")
    if not isinstance(vin, str):
        return f"vin must be a string or null, not {type(vin).__name__}"
    if source == "none":
        return f"VIN {vin!r} has vin_source 'none': say how it was read"
    problem = vin_problem(vin)
    return None if problem is None else f"malformed VIN: {problem}"


Message = TelemetryBatch | DtcBatch | HealthReport | TruthRecord | VehicleInfo
"""What vehicles (and the simulator) send the backend; :class:`Receipt` goes the other way."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """The backend's word that these messages of one vehicle are durably stored.

    Every id named here was committed to the store (as rows, as a duplicate of rows already
    there, or as a dead letter) before the receipt was published; ``ts`` is the Unix time the
    backend published it.
    """

    msg_id: str
    vehicle_id: str
    ts: float
    landed: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)

    @property
    def msg_ids(self) -> list[str]:
        """Every id this receipt names, whatever became of its message."""
        return [*self.landed, *self.duplicates, *self.dead_lettered]


def encode(message: Message) -> bytes:
    """Serialise a contract message to its wire form."""
    body: dict[str, Any]
    if isinstance(message, TelemetryBatch):
        body = {"kind": "telemetry", "ts": message.ts, "signal": message.signal,
                "value": message.value}
    elif isinstance(message, DtcBatch):
        body = {"kind": "dtc", "events": [_dtc_dict(e) for e in message.events]}
    elif isinstance(message, HealthReport):
        body = {"kind": "health", "ts": message.ts, "online": message.online,
                "counters": message.counters}
    elif isinstance(message, VehicleInfo):
        body = {"kind": "vehicle_info", "ts": message.ts, "vin": message.vin,
                "vin_source": message.vin_source, "agent_version": message.agent_version,
                "dbc_fingerprints": message.dbc_fingerprints,
                "rules_fingerprint": message.rules_fingerprint}
    else:
        body = {
            "kind": "truth", "model": message.model, "region": message.region,
            "sim_start_ts": message.sim_start_ts, "sim_end_ts": message.sim_end_ts,
            "components": [
                {"component": c.component, "failure_ts": c.failure_ts,
                 "health_at_end": c.health_at_end}
                for c in message.components
            ],
        }
    head = {"schema": SCHEMA_VERSION, "msg_id": message.msg_id, "vehicle_id": message.vehicle_id}
    return orjson.dumps(head | body, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_receipt(receipt: Receipt) -> bytes:
    """Serialise a receipt to its wire form."""
    return orjson.dumps({
        "schema": SCHEMA_VERSION, "msg_id": receipt.msg_id, "vehicle_id": receipt.vehicle_id,
        "kind": "receipt", "ts": receipt.ts, "landed": receipt.landed,
        "duplicates": receipt.duplicates, "dead_lettered": receipt.dead_lettered,
    })


def decode_receipt(payload: bytes) -> Receipt:
    """Parse and validate a receipt (kept apart from :func:`decode`: the backend never takes
    one as input, so a receipt published on a vehicle's topic is dead-lettered as unknown).

    Raises:
        ContractError: not a schema-1 receipt, or a field is missing or mistyped.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"receipt of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ContractError(f"receipt is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != "receipt":
        raise ContractError("payload is not a receipt (kind must be 'receipt')")
    if doc.get("schema") != SCHEMA_VERSION:
        raise ContractError(
            f"unsupported schema version {doc.get('schema')!r}; this build reads {SCHEMA_VERSION}"
        )
    try:
        lists = [doc[name] for name in ("landed", "duplicates", "dead_lettered")]
        if not all(isinstance(ids, list) and all(isinstance(i, str) for i in ids)
                   for ids in lists):
            raise ValueError("landed, duplicates and dead_lettered must be lists of strings")
        vehicle_id = _checked_vehicle_id(doc["vehicle_id"])
        return Receipt(str(doc["msg_id"]), vehicle_id, float(doc["ts"]), *lists)
    except (KeyError, TypeError, ValueError) as exc:
        raise ContractError(f"malformed receipt: {exc!r}") from exc


_HEAD = re.compile(rb'\{"schema":\d+,"msg_id":"([^"\\]+)"')
"""How :func:`encode` begins every payload: the id can be read without parsing the rest."""


def msg_id_of(payload: bytes) -> str | None:
    """The ``msg_id`` of a payload, or None when it has none (or is not JSON at all).

    Payloads this module encoded are read from their first bytes, so a spool can index every
    message by id for the price of a short match; anything else is parsed, unless it is over
    :data:`MAX_PAYLOAD_BYTES` (the backend dead-letters those without reading them).
    """
    head = _HEAD.match(payload)
    if head is not None:
        return head.group(1).decode("utf-8", errors="replace")
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    msg_id = doc.get("msg_id") if isinstance(doc, dict) else None
    return msg_id if isinstance(msg_id, str) and msg_id else None


def _dtc_dict(event: DtcEvent) -> dict[str, Any]:
    return {"ts": event.ts, "code": event.code, "status": event.status, "ecu": event.ecu,
            "source": event.source, "cleared": event.cleared, "first_seen": event.first_seen,
            "last_seen": event.last_seen, "description": event.description}


def decode(payload: bytes) -> Message:
    """Parse and validate a wire payload.

    Raises:
        ContractError: the payload is not valid JSON, has another schema version, or
            misses or mistypes a field; the message says which.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ContractError(f"payload is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ContractError("payload must be a JSON object")
    if doc.get("schema") != SCHEMA_VERSION:
        raise ContractError(
            f"unsupported schema version {doc.get('schema')!r}; this build reads {SCHEMA_VERSION}"
        )
    try:
        return _decode_body(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise ContractError(f"malformed {doc.get('kind', '?')} payload: {exc!r}") from exc


def _decode_body(doc: dict[str, Any]) -> Message:
    msg_id, vehicle_id, kind = str(doc["msg_id"]), doc["vehicle_id"], doc["kind"]
    if not msg_id:
        raise ValueError("msg_id is empty")
    _checked_vehicle_id(vehicle_id)
    if kind == "telemetry":
        ts = [float(t) for t in doc["ts"]]
        values = [float(v) for v in doc["value"]]
        if not all(math.isfinite(x) for x in ts) or not all(math.isfinite(v) for v in values):
            raise ValueError("ts and value must be finite numbers")
        signals = [str(s) for s in doc["signal"]]
        return TelemetryBatch(msg_id, vehicle_id, ts, signals, values)
    if kind == "dtc":
        return DtcBatch(msg_id, vehicle_id, [_decode_dtc(e) for e in doc["events"]])
    if kind == "health":
        counters = {str(k): float(v) for k, v in dict(doc["counters"]).items()}
        return HealthReport(msg_id, vehicle_id, float(doc["ts"]), bool(doc["online"]), counters)
    if kind == "vehicle_info":
        return _decode_vehicle_info(msg_id, vehicle_id, doc)
    if kind == "truth":
        components = [
            ComponentTruth(str(c["component"]), _opt_float(c["failure_ts"]),
                           float(c["health_at_end"]))
            for c in doc["components"]
        ]
        return TruthRecord(msg_id, vehicle_id, str(doc["model"]), str(doc["region"]),
                           float(doc["sim_start_ts"]), float(doc["sim_end_ts"]), components)
    raise ValueError(f"unknown kind {kind!r}")


def _decode_vehicle_info(msg_id: str, vehicle_id: str, doc: dict[str, Any]) -> VehicleInfo:
    fingerprints = doc.get("dbc_fingerprints", {})
    if not isinstance(fingerprints, dict):
        raise ValueError("dbc_fingerprints must be an object of file name to SHA-256")
    rules = doc.get("rules_fingerprint", "")
    version = doc["agent_version"]
    if not isinstance(rules, str) or not isinstance(version, str):
        raise ValueError("agent_version and rules_fingerprint must be strings")
    vin, source = doc.get("vin"), doc["vin_source"]
    problem = (_vin_problem(vin, source) if isinstance(source, str)
               else "vin_source must be a string")
    if problem is not None:
        raise ContractError(f"malformed vehicle_info payload: {problem}")
    try:
        return VehicleInfo(msg_id, vehicle_id, float(doc["ts"]), vin, source, version,
                           fingerprints, rules)
    except ContractError as exc:
        raise ContractError(f"malformed vehicle_info payload: {exc}") from exc


def _decode_dtc(raw: dict[str, Any]) -> DtcEvent:
    code, status = str(raw["code"]), str(raw["status"])
    if not _J2012.match(code) and not re.match(r"^\d+:\d+$", code):
        raise ValueError(f"fault code {code!r} is neither upper-case J2012 nor SPN:FMI")
    if status not in DTC_STATUSES:
        raise ValueError(f"fault status {status!r} is not one of {DTC_STATUSES}")
    return DtcEvent(float(raw["ts"]), code, status, str(raw.get("ecu", "")),
                    str(raw.get("source", "can")), bool(raw.get("cleared", False)),
                    _opt_float(raw.get("first_seen")), _opt_float(raw.get("last_seen")),
                    str(raw.get("description", "")))


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
