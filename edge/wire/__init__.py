"""The wire between vehicles and the backend: the one part of ``edge`` the backend imports.

Both sides must agree on these byte for byte, so each exists once: the MQTT topics and the
payload schema (:mod:`edge.wire.contract`), how a broker URL is read and shown redacted and
how TLS and the login are set up (:mod:`edge.wire.mqtt`), how a secret is read from the file
a ``<field>_file`` setting names (:mod:`edge.wire.secrets`), what each fault code means
(:mod:`edge.wire.fault_codes`) and what makes a VIN one (:mod:`edge.wire.vin`). A payload
that breaks the contract raises :class:`ContractError`; a broker URL or TLS file that cannot
be used raises :class:`ConfigError` (the backend turns it into its own ``BrokerError``).
"""

from edge.errors import ConfigError, ContractError
from edge.wire.contract import (
    COMPONENTS,
    VIN_SOURCES,
    ComponentTruth,
    DtcEvent,
    TruthRecord,
    VehicleInfo,
)
from edge.wire.fault_codes import DESCRIPTIONS, describe
from edge.wire.mqtt import (
    MQTT_PORT,
    MQTTS_PORT,
    BrokerUrl,
    TlsFiles,
    configure_client_tls,
    configure_login,
    configure_tls,
    parse_mqtt_url,
    read_broker_url,
    redact_url,
)
from edge.wire.secrets import read_secret_files
from edge.wire.vin import check_digit, has_valid_check_digit, is_vin, vin_problem

__all__ = [
    "COMPONENTS",
    "DESCRIPTIONS",
    "MQTTS_PORT",
    "MQTT_PORT",
    "VIN_SOURCES",
    "BrokerUrl",
    "ComponentTruth",
    "ConfigError",
    "ContractError",
    "DtcEvent",
    "TlsFiles",
    "TruthRecord",
    "VehicleInfo",
    "check_digit",
    "configure_client_tls",
    "configure_login",
    "configure_tls",
    "describe",
    "has_valid_check_digit",
    "is_vin",
    "parse_mqtt_url",
    "read_broker_url",
    "read_secret_files",
    "redact_url",
    "vin_problem",
]
