"""J1939: DM1 active fault codes, as a single frame or reassembled from transport (TP).

A J1939 id holds priority, the PGN and the sender's source address (SA); a PDU1 PGN
(PF < 240) carries a destination in its low byte, which is not part of the PGN. Messages longer
than 8 bytes travel over the transport protocol: TP.CM (PGN 0xEC00) announces size, packet
count and the PGN, either as a broadcast (BAM) or a connection (RTS), and TP.DT (PGN 0xEB00)
carries 7 bytes per packet with a 1-based sequence number. A listener reassembles both.

DM1 (PGN 0xFECA): byte 0 holds four lamps (malfunction, red stop, amber warning, protect) two
bits each; from byte 2, four bytes per code: SPN (19 bits), FMI (5 bits), occurrence count
(7 bits). SPN 0 / FMI 0 means "no active fault".
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.diag.errors import DiagParseError

PGN_DM1 = 0xFECA
PGN_TP_CM = 0xEC00
PGN_TP_DT = 0xEB00
PGN_VIN = 0xFEEC

LAMPS = ("MalfunctionLamp", "RedStopLamp", "AmberWarningLamp", "ProtectLamp")

FMI_TEXT = {
    0: "data valid but above normal range, most severe",
    1: "data valid but below normal range, most severe",
    2: "data erratic, intermittent or incorrect",
    3: "voltage above normal or shorted high",
    4: "voltage below normal or shorted low",
    5: "current below normal or open circuit",
    6: "current above normal or grounded circuit",
    7: "mechanical system not responding or out of adjustment",
    8: "abnormal frequency, pulse width or period",
    9: "abnormal update rate",
    10: "abnormal rate of change",
    11: "root cause not known",
    12: "bad intelligent device or component",
    13: "out of calibration",
    14: "special instructions",
    15: "above normal range, least severe",
    16: "above normal range, moderately severe",
    17: "below normal range, least severe",
    18: "below normal range, moderately severe",
    19: "received network data in error",
    31: "condition exists",
}


def split_id(can_id: int) -> tuple[int, int, int]:
    """(PGN, destination, source address) of a 29-bit J1939 id; destination 0xFF if global."""
    source = can_id & 0xFF
    pf = (can_id >> 16) & 0xFF
    pgn = (can_id >> 8) & 0x3FFFF
    if pf < 240:
        return pgn & 0x3FF00, pgn & 0xFF, source
    return pgn, 0xFF, source


@dataclass(frozen=True, slots=True)
class Dm1Code:
    """One active code: SPN, FMI and how often it occurred."""

    spn: int
    fmi: int
    occurrences: int

    @property
    def code(self) -> str:
        """The contract's ``SPN:FMI`` form."""
        return f"{self.spn}:{self.fmi}"


@dataclass(frozen=True, slots=True)
class Dm1:
    """A decoded DM1: the lamp states (0 off, 1 on, 2-3 reserved/n.a.) and the active codes."""

    lamps: tuple[int, int, int, int]
    codes: tuple[Dm1Code, ...]


def parse_dm1(data: bytes) -> Dm1:
    """Decode a DM1 payload (8 bytes single frame, or longer from transport).

    Raises:
        DiagParseError: shorter than the lamp bytes and one code.
    """
    if len(data) < 6:
        raise DiagParseError(f"a DM1 has at least 6 bytes (lamps and one code), got {len(data)}")
    lamp_byte = data[0]
    lamps = ((lamp_byte >> 6) & 3, (lamp_byte >> 4) & 3, (lamp_byte >> 2) & 3, lamp_byte & 3)
    codes = []
    for i in range(2, len(data) - 3, 4):
        b = data[i:i + 4]
        spn = b[0] | (b[1] << 8) | ((b[2] >> 5) << 16)
        fmi = b[2] & 0x1F
        if spn == 0 or spn == 0x7FFFF:
            continue
        codes.append(Dm1Code(spn, fmi, b[3] & 0x7F))
    return Dm1(lamps, tuple(codes))


def describe_spn_fmi(code: str) -> str:
    """Text for an ``SPN:FMI`` code: the SPN number and what the FMI means."""
    spn, _, fmi = code.partition(":")
    meaning = FMI_TEXT.get(int(fmi), "reserved failure mode") if fmi.isdigit() else ""
    return f"SPN {spn}, FMI {fmi}: {meaning}"


def parse_j1939_vin(data: bytes) -> str:
    """The VIN field of PGN 0xFEEC, not yet validated.

    The field is ASCII and ends at ``*``; recorded trucks also send bytes after the 17 VIN
    characters with no delimiter, so at most the first 17 characters are taken.
    """
    field = bytes(data).split(b"*", 1)[0].decode("ascii", errors="replace").strip("\x00 ")
    return field[:17]
