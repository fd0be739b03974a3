"""The MQTT broker as the backend sees it: URLs and login, mutual TLS and the vehicles' PKI,
the generated mosquitto ACL, and the one-machine broker harness for demos and tests.
"""

from pipeline.broker.acl import acl_text, write_broker_config
from pipeline.broker.auth import (
    BackendTls,
    MqttCredentials,
    apply_client_auth,
    apply_client_tls,
    credentials_from_settings,
    credentials_from_url,
    parse_broker_url,
    redact_url,
    tls_from_settings,
)
from pipeline.broker.harness import (
    EmbeddedBroker,
    check_port_free,
    find_mosquitto,
    free_port,
    serve_forever,
    wait_for_port,
)
from pipeline.broker.pki import PkiError
from pipeline.errors import BrokerError

__all__ = [
    "BackendTls",
    "BrokerError",
    "EmbeddedBroker",
    "MqttCredentials",
    "PkiError",
    "acl_text",
    "apply_client_auth",
    "apply_client_tls",
    "check_port_free",
    "credentials_from_settings",
    "credentials_from_url",
    "find_mosquitto",
    "free_port",
    "parse_broker_url",
    "redact_url",
    "serve_forever",
    "tls_from_settings",
    "wait_for_port",
    "write_broker_config",
]
