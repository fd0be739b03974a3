"""The backend's fault-code catalogue words every code exactly as the wire's one table does.

The catalogue once carried descriptions of its own that disagreed with what the vehicle sent
(C1B00 "limit near" in the lead, "limit reached" from the gateway); now component and severity
are the backend's, and every description, in the catalogue table and in the leads, is
``edge.wire.fault_codes``'.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from synth_fleet import START, Car, add_dtc, build_store, day

from edge.wire.fault_codes import DESCRIPTIONS, describe
from pipeline.features.fault_codes import CATALOG, catalog_frame, lookup
from pipeline.leads.advice import advise
from tests.master_data import import_master_data


def test_every_catalogued_code_has_the_wire_description() -> None:
    assert set(CATALOG) <= set(DESCRIPTIONS), "codes the wire's table does not word"
    for code, info in CATALOG.items():
        assert info.description == DESCRIPTIONS[code] == describe(code)
    frame = catalog_frame()
    assert dict(zip(frame["code"], frame["description"], strict=True)) == {
        code: DESCRIPTIONS[code] for code in CATALOG}
    found = lookup(" c1b00 ")
    assert found is not None and found.description == DESCRIPTIONS["C1B00"]


def test_the_leads_quote_the_wire_description_of_each_code(tmp_path: Path) -> None:
    con = build_store(tmp_path / "fleet.duckdb", [Car("ev-1")], 30)
    import_master_data(con, start=day(29))
    with_component = sorted(c for c, info in CATALOG.items() if info.component is not None)
    for code in with_component:
        add_dtc(con, "ev-1", 29, code)
    advise(con, now=START + dt.timedelta(days=29, hours=18))
    quoted = {c["code"]: c["description"]
              for (doc,) in con.execute("SELECT document FROM leads").fetchall()
              for c in json.loads(doc)["evidence"]["fault_codes"]}
    assert quoted == {code: DESCRIPTIONS[code] for code in with_component}
