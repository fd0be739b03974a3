"""A small fleet whose service story the manager's report tests know by heart.

Five EVs at the north centre, one ICE car at the south centre, master data imported as
``fleetcare fleet import`` would. At ``NOW`` (30 January 2025, 18:00 UTC) advice issues five
high-severity brake leads (ev-a, ev-b, ev-d, ev-e north; ice-a south) and one critical
traction-battery lead (ev-c, an isolation fault code); all reach the reference CRM 5 minutes
later (``SENT``). North then acknowledges ev-c after 20 min and ev-a after 2 h, books ev-b
after 3 h and finishes it after 10 h (a visit: its follow-up falls due 24 h later, 1 Feb
04:05), and books ev-d after 20 h for 1 February; ev-e and the south centre's ice-a are not
answered.
On 1 Feb 06:00 the follow-up campaign sends ev-b's follow-up and it is delivered.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import duckdb
from synth_fleet import START, Car, add_dtc, build_store, day

from pipeline.crm.inbound import Inbox, StatusUpdate
from pipeline.crm.outbox import deliver_outbox
from pipeline.leads.advice import advise
from pipeline.leads.appointments import iso
from pipeline.leads.campaigns import send_follow_ups
from pipeline.leads.lifecycle import apply_inbound
from pipeline.sandbox.reference_crm import CrmReceiver
from tests.master_data import import_master_data

SECRET = "whsec_" + base64.b64encode(b"fleetcare-report-test-key").decode()
NOW = START + dt.timedelta(days=29, hours=18)
SENT = NOW + dt.timedelta(minutes=5)
TODAY = dt.date(2025, 2, 1)
NORTH = ("ev-a", "ev-b", "ev-c", "ev-d", "ev-e")


def hours(h: float) -> str:
    """``SENT`` plus ``h`` hours, as the CRM writes a time."""
    return iso(SENT + dt.timedelta(hours=h))


def build_report_store(path: Path) -> duckdb.DuckDBPyConnection:
    """The store of the module docstring, open read-write."""
    cars = [*(Car(v) for v in NORTH), Car("ice-a", ev=False, region="south")]
    store = build_store(path, cars, 30)
    import_master_data(store, start=day(29))
    store.execute("INSERT INTO model_registry (model_id, component, features, metrics,"
                  " artifact, promoted) VALUES ('m', 'brakes', [], '{\"threshold\": 0.5}',"
                  " ''::BLOB, true)")
    for vehicle in ("ev-a", "ev-b", "ev-d", "ev-e", "ice-a"):
        store.execute("INSERT INTO scores (vehicle_id, component, as_of, probability,"
                      " horizon_days, model_id) VALUES (?, 'brakes', ?, 0.9, 30, 'm')",
                      [vehicle, day(29)])
    add_dtc(store, "ev-c", 29, "P0AA6")
    advise(store, now=NOW)
    leads = dict(store.execute("SELECT vehicle_id, lead_id FROM leads").fetchall())
    inbox = Inbox(path.with_name("status.jsonl"))
    for vehicle, state, after, detail in (
            ("ev-a", "acknowledged", 2, {}), ("ev-c", "acknowledged", 1 / 3, {}),
            ("ev-b", "booked", 3, {"appointment_day": "2025-01-31"}),
            ("ev-b", "done", 10, {"work_done": "pads"}),
            ("ev-d", "booked", 20, {"appointment_day": TODAY.isoformat()})):
        inbox.append(StatusUpdate(f"u-{vehicle}-{state}", leads[vehicle], state,
                                  hours(after), detail))
    with CrmReceiver(SECRET) as crm:
        assert deliver_outbox(store, url=crm.url, secret=SECRET, now=SENT).delivered == 6
        apply_inbound(store, inbox, now=SENT)
        follow_at = dt.datetime(2025, 2, 1, 6, tzinfo=dt.UTC)
        assert send_follow_ups(store, now=follow_at).contacted == ("ev-b",)
        assert deliver_outbox(store, url=crm.url, secret=SECRET, now=follow_at).delivered == 1
    return store
