"""On-board diagnostics: OBD-II (ELM327 and native ISO-TP), J1939 DM1 and UDS battery data.

Everything here turns diagnostic answers into the edge's own records: samples
``(ts, signal, value)`` and ``edge.wire.contract.DtcEvent``. The byte-level parsers are shared by
every path (an ELM327 adapter, ISO-TP on a CAN port, a recorded log), so one answer always
decodes the same way whichever way it arrived.
"""
