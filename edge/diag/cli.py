"""``fleetcare obd read``: a one-shot read of a vehicle over OBD-II. Only this module prints.

PORT is an ELM327 adapter (a serial device such as /dev/ttyUSB0, a pty, or a
``socket://host:port`` URL), or, with ``--can INTERFACE``, a python-can channel read natively
over ISO-TP. Clearing fault codes (mode 04) erases the ECUs' records and turns off the MIL, so
it runs only with ``--clear-codes``.
"""

from __future__ import annotations

import argparse
import json

from edge.diag.reader import ObdSnapshot, read_once


def register_obd(sub: argparse._SubParsersAction) -> None:
    """``fleetcare obd read PORT [--json]``."""
    obd = sub.add_parser("obd", help="read a vehicle over OBD-II (ELM327 or native CAN)",
                         description="On-board diagnostics over an ELM327 adapter or ISO-TP.")
    obd_sub = obd.add_subparsers(dest="obd_command", metavar="SUBCOMMAND", required=True)
    read = obd_sub.add_parser(
        "read", help="one-shot read: protocol, VIN, supported PIDs, values, fault codes",
        description="Read protocol, VIN, supported PIDs, their current values and the fault "
                    "codes of each status (stored, pending, permanent) once.")
    read.add_argument("port", metavar="PORT",
                      help="ELM327: /dev/ttyUSB0, a pty, socket://host:port; with --can: the "
                           "python-can channel (can0, ...)")
    read.add_argument("--json", action="store_true", help="print one JSON object")
    read.add_argument("--baudrate", type=int,
                      help="ELM327 baud rate (default: probe; 38400 on socket:// URLs)")
    read.add_argument("--protocol", help="ELM327 protocol id (default: automatic)")
    read.add_argument("--can", metavar="INTERFACE",
                      help="read natively over ISO-TP with this python-can interface")
    read.add_argument("--extended", action="store_true",
                      help="with --can: 29-bit ids (0x18DB33F1 / 0x18DAF1xx)")
    read.add_argument("--timeout", type=float, default=None,
                      help="seconds to wait for answers (ELM default 5, CAN default 1)")
    read.add_argument("--clear-codes", action="store_true",
                      help="also clear stored and pending codes (mode 04) after reading")
    read.set_defaults(handler=_read)


def _read(args: argparse.Namespace) -> int:
    snapshot = _read_can(args) if args.can else _read_elm(args)
    if args.json:
        print(json.dumps(snapshot.as_json()))
    else:
        print(_text(snapshot))
    return 0


def _read_elm(args: argparse.Namespace) -> ObdSnapshot:
    from edge.diag.elm import ElmConnection

    timeout = 5.0 if args.timeout is None else args.timeout
    with ElmConnection(args.port, baudrate=args.baudrate, protocol=args.protocol,
                       timeout=timeout) as link:
        return read_once(link, link.protocol, clear=args.clear_codes)


def _read_can(args: argparse.Namespace) -> ObdSnapshot:
    import can

    from edge.diag.isotp_link import IsoTpLink

    timeout = 1.0 if args.timeout is None else args.timeout
    bus = can.Bus(interface=args.can, channel=args.port)
    try:
        with IsoTpLink(bus, extended=args.extended, timeout=timeout) as link:
            return read_once(link, link.protocol, clear=args.clear_codes)
    finally:
        bus.shutdown()


def _text(s: ObdSnapshot) -> str:
    doc = s.as_json()
    lines = [f"protocol  {s.protocol}", f"vin       {s.vin or '(none)'}"]
    for ecu, pids in doc["supported_pids"].items():
        lines.append(f"pids      {ecu}: {' '.join(pids)}")
    lines += [f"value     {name} = {value:g}" for name, value in doc["values"].items()]
    for status, codes in doc["dtcs"].items():
        listed = ", ".join(f"{c['code']} ({c['description']}, ECU {c['ecu']})" for c in codes)
        lines.append(f"{status:<9} {listed or 'none'}")
    if s.cleared:
        lines.append("cleared   stored and pending codes cleared (mode 04)")
    lines += [f"warning   {e}" for e in s.errors]
    return "\n".join(lines)
