"""The wire between vehicles and the backend: the one part of ``edge`` the backend imports.

Both sides must agree on these byte for byte, so each exists once: the MQTT topics and the
payload schema (:mod:`edge.wire.contract`), how a broker URL is read and shown redacted and
how TLS is set up (:mod:`edge.wire.mqtt`), and what each fault code means
(:mod:`edge.wire.fault_codes`). A payload that breaks the contract raises
:class:`ContractError`.
"""

from edge.errors import ContractError
from edge.wire.contract import COMPONENTS, ComponentTruth, DtcEvent, TruthRecord
from edge.wire.fault_codes import describe
from edge.wire.mqtt import TlsFiles, configure_tls, parse_mqtt_url, redact_url

__all__ = [
    "COMPONENTS",
    "ComponentTruth",
    "ContractError",
    "DtcEvent",
    "TlsFiles",
    "TruthRecord",
    "configure_tls",
    "describe",
    "parse_mqtt_url",
    "redact_url",
]
