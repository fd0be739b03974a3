"""Backend checks: spoofed, unknown and replayed messages, and a flooding vehicle.

The token bucket and the register's refresh run on a fake clock; everything that lands goes
through a real mosquitto and a real DuckDB file.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import pytest

from edge.wire import contract
from pipeline.ingest.admission import (
    Admission,
    FleetFileError,
    RateLimit,
    RateLimiter,
    Vehicle,
    VehicleRegister,
    read_fleet_file,
    register_vehicles,
)
from pipeline.ingest.deadletters import replay_dead_letters
from pipeline.ingest.landing import InboundMessage, LandResult, land
from pipeline.ingest.service import Ingestor
from pipeline.store import connection as store
from tests.pipeline.test_ingest import (
    FAST,
    SIGNALS,
    T0,
    Wire,
    handled,
    publish,
    telemetry,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_admits_its_burst_then_its_rate_and_each_vehicle_has_its_own() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(rows_per_s=100, burst_rows=500), clock)

    assert [limiter.admit("A", 100) for _ in range(5)] == [None] * 5
    refusal = limiter.admit("A", 100)
    assert refusal is not None and refusal.check == "rate_limit" and refusal.rows == 100
    assert refusal.reason == ("rate limit: vehicle 'A' sent 600 rows in 0.0 s (this message's "
                              "100 included), over its limit of 100 rows/s (burst 500)")
    assert limiter.admit("B", 500) is None  # another vehicle is unaffected

    clock.now += 1.0  # 100 rows' worth of tokens
    assert limiter.admit("A", 100) is None
    assert limiter.admit("A", 1) is not None
    clock.now += 2.0
    refusal = limiter.admit("A", 300)
    assert refusal is not None and "sent 900 rows in 3.0 s" in refusal.reason


def test_every_message_costs_at_least_one_row_and_at_most_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(rows_per_s=1, burst_rows=3), clock)

    assert [limiter.admit("A", 0) is None for _ in range(4)] == [True, True, True, False]
    clock.now += 10  # full again
    assert limiter.admit("A", 1_000) is None  # larger than the burst: lands on a full bucket
    assert limiter.admit("A", 1) is not None


def test_idle_vehicles_are_forgotten() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(rows_per_s=10, burst_rows=100), clock)
    limiter.admit("A", 100)
    limiter.admit("B", 5)
    clock.now += 1.0

    assert limiter.prune() == 1  # B is full again, A has 10 of 100
    clock.now += 9.0
    assert limiter.maybe_prune() == 0  # the last sweep was 9 s ago
    clock.now += 60.0
    assert limiter.maybe_prune() == 1


def test_after_ingest_downtime_each_vehicle_may_send_its_backlog_once() -> None:
    clock = FakeClock()
    limit = RateLimit(rows_per_s=10, burst_rows=100, catch_up_s=60)
    limiter = RateLimiter(limit, clock, downtime_s=30)  # 30 s away: 300 rows each
    assert limiter.catch_up_rows == 300

    assert [limiter.admit("A", 100) for _ in range(4)] == [None] * 4  # credit, then burst
    refusal = limiter.admit("A", 1)  # the 401st row is one too many
    assert refusal is not None
    assert refusal.reason == ("rate limit: vehicle 'A' sent 101 rows in 0.0 s (this message's "
                              "1 included), over its limit of 10 rows/s (burst 100), beyond "
                              "its catch-up of 300 rows after ingest's downtime")
    assert limiter.admit("B", 400) is None  # every vehicle has its own credit

    clock.now += 100.0  # A is idle and full again: forgotten, and its credit is not renewed
    assert limiter.prune() == 2
    assert limiter.admit("A", 100) is None
    assert limiter.admit("A", 1) is not None
    assert limiter.admit("C", 400) is None  # a vehicle first heard of now still has its own


def test_the_catch_up_is_capped_and_none_without_downtime() -> None:
    capped = RateLimiter(RateLimit(10, 100, catch_up_s=60), FakeClock(), downtime_s=86_400)
    assert capped.catch_up_rows == 600
    fresh = RateLimiter(RateLimit(10, 100), FakeClock())
    assert fresh.catch_up_rows == 0
    assert fresh.admit("A", 100) is None and fresh.admit("A", 1) is not None
    with pytest.raises(ValueError, match="catch_up_s must be zero or a positive number"):
        RateLimit(10, 100, catch_up_s=-1)


def test_a_rate_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rows_per_s must be a positive number"):
        RateLimit(0, 10)
    with pytest.raises(ValueError, match="burst_rows"):
        RateLimit(10, float("nan"))


def test_the_register_reloads_on_a_miss_at_most_once_per_interval() -> None:
    clock = FakeClock()
    fleet = {"A"}
    loads: list[float] = []

    def load() -> set[str]:
        loads.append(clock.now)
        return set(fleet)

    register = VehicleRegister(load, refresh_s=5.0, clock=clock)
    fleet.add("B")
    assert register.known("A") and not register.known("B") and not register.known("B")
    clock.now += 5.0
    assert register.known("B")
    assert not register.known("C")  # just reloaded: no second query
    assert loads == [1000.0, 1005.0]


def test_unknown_vehicles_get_no_bucket() -> None:
    limiter = RateLimiter(RateLimit(1, 1), FakeClock())
    admission = Admission(VehicleRegister(lambda: {"A"}, clock=FakeClock()), limiter)

    refusal = admission.refuse("X", 5)
    assert refusal is not None and refusal.check == "unknown_vehicle"
    assert "'X' is not registered" in refusal.reason
    assert admission.refuse("A", 1) is None and admission.refuse("A", 1) is not None
    assert limiter.prune() == 0  # only A's bucket exists, and it is empty


def test_a_fleet_file_with_a_bad_line_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "fleet.csv"
    path.write_text("vehicle_id,model,region\nV1,EV-A,north\nno/slash,EV-A,north\n")
    with pytest.raises(FleetFileError, match="line 3"):
        read_fleet_file(path)
    path.write_text("vehicle_id,model\nV1,EV-A\n")
    with pytest.raises(FleetFileError, match="lacks \\['region'\\]"):
        read_fleet_file(path)


def _inbound(wire: Wire) -> InboundMessage:
    return InboundMessage(wire[0], wire[1], T0)


def test_a_msg_id_of_another_vehicle_is_dead_lettered_not_a_duplicate(db_path: Path) -> None:
    con = store.connect(db_path)
    land(con, [_inbound(telemetry("m1", "VA"))])

    again = land(con, [_inbound(telemetry("m1", "VA")), _inbound(telemetry("m1", "VB")),
                       _inbound(telemetry("m2", "VB")), _inbound(telemetry("m2", "VA"))])

    assert again == LandResult(messages_landed=1, telemetry_rows=SIGNALS, duplicates=1,
                               dead_letters=2, msg_id_conflicts=2)
    reasons = [r[0] for r in con.execute("SELECT reason FROM dead_letters ORDER BY id").fetchall()]
    assert reasons == [
        "msg_id conflict: msg_id 'm1' already landed for vehicle 'VA'; vehicle 'VB' sent it "
        "again (a replayed or forged message)",
        "msg_id conflict: msg_id 'm2' already landed for vehicle 'VB'; vehicle 'VA' sent it "
        "again (a replayed or forged message)",
    ]
    con.close()


def _start(url: str, db_path: Path, vehicles: list[str], **options: object) -> Ingestor:
    con = store.connect(db_path)
    register_vehicles(con, [Vehicle(v, "EV-A", "north") for v in vehicles])
    con.close()
    return Ingestor(url, db_path, client_id=f"adm-{uuid.uuid4().hex[:10]}",
                    **FAST, **options).start()  # type: ignore[arg-type]


def _letters(db_path: Path) -> list[tuple[str, str]]:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return [(str(t), str(r)) for t, r in con.execute(
            "SELECT topic, reason FROM dead_letters ORDER BY id").fetchall()]
    finally:
        con.close()


def test_spoofed_unknown_and_replayed_messages_are_dead_lettered(
        mosquitto_url: str, db_path: Path) -> None:
    spoofed = (contract.telemetry_topic("VA"), telemetry("s1", "VB")[1])  # VB's payload on VA
    stranger = telemetry("s2", "VX")  # VX is not registered
    replayed = (contract.telemetry_topic("VB"), telemetry("s3", "VB")[1])
    ingestor = _start(mosquitto_url, db_path, ["VA", "VB"])
    try:
        publish(mosquitto_url, [telemetry("s3", "VA")])
        assert ingestor.wait_for(lambda s: s.messages_landed == 1, timeout=15)
        publish(mosquitto_url, [spoofed, stranger, replayed, telemetry("s3", "VA"),
                                telemetry("s4", "VB")])

        assert ingestor.wait_for(handled(6), timeout=15)
        stats = ingestor.stats
    finally:
        ingestor.stop()
    assert (stats.messages_landed, stats.duplicates, stats.dead_letters) == (2, 1, 3)
    assert (stats.unknown_vehicles, stats.msg_id_conflicts, stats.rate_limited) == (1, 1, 0)
    letters = _letters(db_path)
    assert [topic for topic, _ in letters] == [spoofed[0], stranger[0], replayed[0]]
    assert "topic vehicle 'VA' does not match payload vehicle_id 'VB'" in letters[0][1]
    assert "unknown vehicle: 'VX' is not registered" in letters[1][1]
    assert "msg_id 's3' already landed for vehicle 'VA'; vehicle 'VB'" in letters[2][1]


def test_a_flooding_vehicle_is_limited_while_another_lands_in_full(
        mosquitto_url: str, db_path: Path) -> None:
    # A refill of 0.001 rows/s adds no whole message during the test: exactly the burst lands.
    limit = RateLimit(rows_per_s=0.001, burst_rows=10 * SIGNALS)
    flood = [telemetry(f"f{i}", "FLOOD") for i in range(200)]
    calm = [telemetry(f"c{i}", "CALM") for i in range(10)]
    ingestor = _start(mosquitto_url, db_path, ["FLOOD", "CALM"], rate_limit=limit)
    try:
        publish(mosquitto_url, [w for pair in zip(flood[:10], calm, strict=True) for w in pair]
                + flood[10:])
        assert ingestor.wait_for(handled(210), timeout=30)
        stats = ingestor.stats
    finally:
        ingestor.stop()
    assert (stats.messages_landed, stats.telemetry_rows) == (20, 20 * SIGNALS)
    assert (stats.rate_limited, stats.rate_limited_rows, stats.dead_letters) == (
        190, 190 * SIGNALS, 190)
    con = duckdb.connect(str(db_path), read_only=True)
    per_vehicle = dict(con.execute(
        "SELECT vehicle_id, count(*) FROM telemetry GROUP BY 1").fetchall())
    con.close()
    assert per_vehicle == {"CALM": 10 * SIGNALS, "FLOOD": 10 * SIGNALS}
    reasons = {reason for _, reason in _letters(db_path)}
    assert all(r.startswith("rate limit: vehicle 'FLOOD' sent ") for r in reasons)
    assert all(r.endswith("over its limit of 0.001 rows/s (burst 500)") for r in reasons)


@pytest.mark.parametrize(("catch_up_s", "landed"), [(3600.0, 2 + 30), (0.0, 2)])
def test_a_backlog_queued_while_ingest_was_down_lands_within_the_catch_up(
        mosquitto_url: str, db_path: Path, catch_up_s: float, landed: int) -> None:
    # One message per 100 s, a burst of two: without the catch-up a backlog is a flood.
    limit = RateLimit(rows_per_s=SIGNALS / 100, burst_rows=2 * SIGNALS, catch_up_s=catch_up_s)
    client_id = f"adm-{uuid.uuid4().hex[:10]}"
    con = store.connect(db_path)
    register_vehicles(con, [Vehicle("BACK", "EV-A", "north")])
    con.close()
    first = Ingestor(mosquitto_url, db_path, client_id=client_id, **FAST).start()
    publish(mosquitto_url, [telemetry("b-first", "BACK")])
    assert first.wait_for(handled(1), timeout=15)
    first.stop()  # ingest goes away; the broker keeps the session's messages meanwhile
    con = store.connect(db_path)  # ...for 3,000 s, as far as the store can tell
    con.execute("UPDATE ingested_messages SET landed_at = now() - INTERVAL 3000 SECOND")
    con.close()
    publish(mosquitto_url, [telemetry(f"b{i}", "BACK") for i in range(40)])

    ingestor = Ingestor(mosquitto_url, db_path, client_id=client_id, rate_limit=limit,
                        **FAST).start()
    try:
        assert ingestor.wait_for(handled(40), timeout=30)
        stats = ingestor.stats
    finally:
        ingestor.stop()
    # 3,000 s at one message per 100 s is 30 messages of credit, on top of the burst of 2.
    assert (stats.messages_landed, stats.rate_limited) == (landed, 40 - landed)
    assert stats.dead_letters == 40 - landed  # the rest is kept, to be replayed


def test_a_vehicle_registered_while_ingest_runs_lands_and_its_letters_replay(
        mosquitto_url: str, db_path: Path, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.csv"
    fleet.write_text("vehicle_id,model,region\nVA,EV-A,north\n")
    ingestor = _start(mosquitto_url, db_path, [], vehicles_file=fleet, register_refresh_s=0.0)
    try:
        publish(mosquitto_url, [telemetry("r1", "VA"), telemetry("r2", "VN")])
        assert ingestor.wait_for(handled(2), timeout=15)
        assert (ingestor.stats.messages_landed, ingestor.stats.unknown_vehicles) == (1, 1)

        fleet.write_text("vehicle_id,model,region\nVA,EV-A,north\nVN,ICE-B,south\n")
        publish(mosquitto_url, [telemetry("r3", "VN")])
        assert ingestor.wait_for(lambda s: s.messages_landed == 2, timeout=15)
    finally:
        ingestor.stop()
    con = store.connect(db_path)
    try:
        assert replay_dead_letters(con) == LandResult(messages_landed=1,
                                                      telemetry_rows=SIGNALS)
        assert con.execute("SELECT count(DISTINCT msg_id) FROM telemetry WHERE vehicle_id = 'VN'"
                           ).fetchone() == (2,)
        assert con.execute("SELECT region FROM vehicles WHERE vehicle_id = 'VN'"
                           ).fetchone() == ("south",)
    finally:
        con.close()


def test_the_checks_can_be_switched_off(mosquitto_url: str, db_path: Path) -> None:
    ingestor = _start(mosquitto_url, db_path, [], require_registered_vehicles=False,
                      rate_limit=None)
    try:
        publish(mosquitto_url, [telemetry(f"o{i}", "ANYONE") for i in range(3)])
        assert ingestor.wait_for(lambda s: s.messages_landed == 3, timeout=15)
    finally:
        ingestor.stop()


def test_fleetcare_ingest_refuses_a_bad_fleet_register_before_connecting(
        tmp_path: Path, db_path: Path) -> None:
    fleet = tmp_path / "fleet.csv"
    fleet.write_text("vehicle_id,model,region\nV1,EV-A,north\nV2,,north\n")

    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "ingest", "--broker", "mqtt://127.0.0.1:1",
         "--db", str(db_path), "--vehicles", str(fleet), "--rate-limit", "500"],
        capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 1
    assert "line 3: model and region must not be empty" in done.stderr
