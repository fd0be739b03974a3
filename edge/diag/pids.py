"""OBD-II mode 01 PIDs: lengths, scaling (SAE J1979) and the names we publish them under.

A mode 01 answer may hold several PIDs (a request asks for up to six), each followed by its
data bytes, so the parser must know every PID's length to find the next one. A PID not in the
table stops the parse there; what came before it is kept and the unknown PID is reported.

Names: the VSS 4.0 path where VSS has the same quantity (engine speed, coolant temperature,
vehicle speed, odometer, ...), else ``OBD.<NAME>``. The control module voltage is the ECU's
supply, the 12 V system as the ECU sees it, so it lands as the low-voltage battery voltage the
12 V battery model reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge.diag.errors import DiagParseError

SUPPORT_PIDS = (0x00, 0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0)
"""PIDs whose answer is a bitmap of the next 32 PIDs an ECU supports."""


@dataclass(frozen=True, slots=True)
class Pid:
    """One mode 01 PID: its data length, its formula on the data bytes, its published name."""

    pid: int
    name: str
    size: int
    formula: Callable[[bytes], float]
    vss: str | None = None

    @property
    def signal(self) -> str:
        """The published signal name: the VSS path, else ``OBD.<name>``."""
        return self.vss or f"OBD.{self.name}"


def _u16(b: bytes) -> int:
    return (b[0] << 8) | b[1]


def _trim(b: bytes) -> float:
    return (b[0] - 128) * 100 / 128


_TABLE = (
    Pid(0x01, "DTC_COUNT", 4, lambda b: b[0] & 0x7F),
    Pid(0x04, "ENGINE_LOAD", 1, lambda b: b[0] * 100 / 255),
    Pid(0x05, "COOLANT_TEMP", 1, lambda b: b[0] - 40, "Vehicle.Powertrain.CombustionEngine.ECT"),
    Pid(0x06, "SHORT_FUEL_TRIM_1", 1, _trim),
    Pid(0x07, "LONG_FUEL_TRIM_1", 1, _trim),
    Pid(0x08, "SHORT_FUEL_TRIM_2", 1, _trim),
    Pid(0x09, "LONG_FUEL_TRIM_2", 1, _trim),
    Pid(0x0A, "FUEL_PRESSURE", 1, lambda b: b[0] * 3),
    Pid(0x0B, "INTAKE_PRESSURE", 1, lambda b: b[0]),
    Pid(0x0C, "RPM", 2, lambda b: _u16(b) / 4, "Vehicle.Powertrain.CombustionEngine.Speed"),
    Pid(0x0D, "SPEED", 1, lambda b: b[0], "Vehicle.Speed"),
    Pid(0x0E, "TIMING_ADVANCE", 1, lambda b: b[0] / 2 - 64),
    Pid(0x0F, "INTAKE_TEMP", 1, lambda b: b[0] - 40),
    Pid(0x10, "MAF", 2, lambda b: _u16(b) / 100),
    Pid(0x11, "THROTTLE_POS", 1, lambda b: b[0] * 100 / 255),
    Pid(0x1F, "RUN_TIME", 2, _u16),
    Pid(0x21, "DISTANCE_W_MIL", 2, _u16),
    Pid(0x2F, "FUEL_LEVEL", 1, lambda b: b[0] * 100 / 255,
        "Vehicle.Powertrain.FuelSystem.RelativeLevel"),
    Pid(0x31, "DISTANCE_SINCE_DTC_CLEAR", 2, _u16),
    Pid(0x33, "BAROMETRIC_PRESSURE", 1, lambda b: b[0]),
    Pid(0x42, "CONTROL_MODULE_VOLTAGE", 2, lambda b: _u16(b) / 1000,
        "Vehicle.LowVoltageBattery.CurrentVoltage"),
    Pid(0x43, "ABSOLUTE_LOAD", 2, lambda b: _u16(b) * 100 / 255),
    Pid(0x44, "COMMANDED_EQUIV_RATIO", 2, lambda b: _u16(b) * 2 / 65536),
    Pid(0x45, "RELATIVE_THROTTLE_POS", 1, lambda b: b[0] * 100 / 255),
    Pid(0x46, "AMBIENT_AIR_TEMP", 1, lambda b: b[0] - 40, "Vehicle.Exterior.AirTemperature"),
    Pid(0x4D, "RUN_TIME_MIL", 2, _u16),
    Pid(0x4E, "TIME_SINCE_DTC_CLEARED", 2, _u16),
    Pid(0x5B, "HYBRID_BATTERY_REMAINING", 1, lambda b: b[0] * 100 / 255),
    Pid(0x5C, "OIL_TEMP", 1, lambda b: b[0] - 40),
    Pid(0x5E, "FUEL_RATE", 2, lambda b: _u16(b) / 20),
    Pid(0x62, "ACTUAL_ENGINE_TORQUE", 1, lambda b: b[0] - 125),
    Pid(0x63, "ENGINE_REFERENCE_TORQUE", 2, _u16),
    Pid(0xA6, "ODOMETER", 4, lambda b: int.from_bytes(b[:4], "big") / 10,
        "Vehicle.TraveledDistance"),
)

PIDS: dict[int, Pid] = {p.pid: p for p in _TABLE}
PIDS_BY_NAME: dict[str, Pid] = {p.name: p for p in _TABLE}


@dataclass(frozen=True, slots=True)
class PidAnswer:
    """What a mode 01 answer held: decoded values, supported-PID bitmaps, an unknown PID."""

    values: tuple[tuple[Pid, float], ...] = ()
    supported: frozenset[int] = frozenset()
    unknown_pid: int | None = None


def parse_pid_answer(payload: bytes) -> PidAnswer:
    """Decode a mode 01 answer that starts with 0x41 (one or several PIDs).

    Raises:
        DiagParseError: not a mode 01 answer, or a PID's data is cut short.
    """
    if len(payload) < 2 or payload[0] != 0x41:
        raise DiagParseError("a mode 01 answer starts with 0x41 and at least one PID")
    values: list[tuple[Pid, float]] = []
    supported: set[int] = set()
    i = 1
    while i < len(payload):
        pid, data = payload[i], payload[i + 1:]
        size = 4 if pid in SUPPORT_PIDS else PIDS[pid].size if pid in PIDS else None
        if size is None:
            return PidAnswer(tuple(values), frozenset(supported), pid)
        if len(data) < size:
            raise DiagParseError(f"PID 0x{pid:02X} needs {size} data bytes, {len(data)} left")
        if pid in SUPPORT_PIDS:
            supported |= supported_from_bitmap(pid, data[:4])
        else:
            values.append((PIDS[pid], float(PIDS[pid].formula(data[:size]))))
        i += 1 + size
    return PidAnswer(tuple(values), frozenset(supported))


def supported_from_bitmap(base: int, bitmap: bytes) -> set[int]:
    """The PIDs ``base+1 .. base+32`` whose bit is set (most significant bit first)."""
    bits = int.from_bytes(bitmap[:4], "big")
    return {base + n for n in range(1, 33) if bits & (1 << (32 - n))}


def split_requests(pids: list[int], per_request: int = 6) -> list[list[int]]:
    """Group PIDs into requests of at most ``per_request`` (older ECUs reject more than 6)."""
    if not 1 <= per_request <= 6:
        raise ValueError("a mode 01 request carries 1 to 6 PIDs")
    return [pids[i:i + per_request] for i in range(0, len(pids), per_request)]
