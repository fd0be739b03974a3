"""On-board diagnostics: OBD-II (ELM327 and native ISO-TP), J1939 DM1 and UDS battery data.

Everything here turns diagnostic answers into the edge's own records: samples
``(ts, signal, value)`` and ``edge.wire.contract.DtcEvent``. The byte-level parsers are shared by
every path (an ELM327 adapter, ISO-TP on a CAN port, a recorded log), so one answer always
decodes the same way whichever way it arrived.
"""

from edge.diag.answers import NegativeAnswer, decode_answer
from edge.diag.dtc import DtcAnswer, DtcTracker, parse_dtc_answer
from edge.diag.elm import ElmConnection
from edge.diag.errors import DiagLinkError, DiagParseError
from edge.diag.isotp_link import IsoTpLink
from edge.diag.j1939 import describe_spn_fmi, parse_dm1, parse_j1939_vin
from edge.diag.j1939_tap import J1939Tap
from edge.diag.obd_tap import ObdTap
from edge.diag.pids import parse_pid_answer
from edge.diag.poller import Poller, PollGroup
from edge.diag.reader import clear_codes, read_dtcs, read_once, read_values
from edge.diag.taps import TAP_NAMES, make_taps
from edge.diag.uds_client import UdsClient
from edge.diag.uds_map import load_did_map, parse_uds_answer
from edge.diag.uds_tap import UdsTap
from edge.diag.vin import parse_vin_answer

__all__ = [
    "TAP_NAMES",
    "DiagLinkError",
    "DiagParseError",
    "DtcAnswer",
    "DtcTracker",
    "ElmConnection",
    "IsoTpLink",
    "J1939Tap",
    "NegativeAnswer",
    "ObdTap",
    "PollGroup",
    "Poller",
    "UdsClient",
    "UdsTap",
    "clear_codes",
    "decode_answer",
    "describe_spn_fmi",
    "load_did_map",
    "make_taps",
    "parse_dm1",
    "parse_dtc_answer",
    "parse_j1939_vin",
    "parse_pid_answer",
    "parse_uds_answer",
    "parse_vin_answer",
    "read_dtcs",
    "read_once",
    "read_values",
]
