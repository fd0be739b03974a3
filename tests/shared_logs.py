"""The real recordings in ``../shared/data/can`` paired with the DBC that decodes each.

Several edge tests replay every shared log; they read the pairing from here so a new
recording is added in one place.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

LOGS_AND_DBCS: list[tuple[str, str]] = [
    ("kona_2018/turnonlog.log", "hyundai_kia_generic.dbc"),
    ("subaru_wrx/cruise.log", "subaru_outback_2015_generated.dbc"),
    ("truck_j1939_tp/00000001-60B621D9.candump.log", "CSS-Electronics-SAE-J1939-DEMO.dbc"),
    ("leaf_2019_uds/00000001.candump.log", "tp_uds_nissan.dbc"),
    ("car_obd2_gnss/00000002-60FE415D.candump.log", "hyundai_kia_generic.dbc"),
]
LOG_IDS = [log.split("/")[0] for log, _ in LOGS_AND_DBCS]
