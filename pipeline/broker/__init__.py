"""The MQTT broker as the backend sees it: URLs and login, mutual TLS and the vehicles' PKI,
the generated mosquitto ACL and configuration (queue, size and persistence limits, the user it
runs as), its ``$SYS`` drop counter, and the one-machine broker harness for demos and tests.
"""

from pipeline.broker.account import BROKER_ACCOUNT, Account, default_broker_account
from pipeline.broker.acl import (
    BACKEND_USERS,
    MONITOR_USERS,
    acl_text,
    tls_listener_config,
    write_broker_config,
)
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
from pipeline.broker.counters import (
    WATCHED_TOPIC,
    BrokerCounters,
    DropWatcher,
    MonitorIdentityError,
    read_broker_counters,
)
from pipeline.broker.harness import (
    EmbeddedBroker,
    check_port_free,
    find_mosquitto,
    free_port,
    mosquitto_config,
    serve_forever,
    wait_for_port,
)
from pipeline.broker.limits import DEFAULT_LIMITS, BrokerLimits, derive_limits, durability_config
from pipeline.broker.pki import PkiError
from pipeline.errors import BrokerError

__all__ = [
    "BACKEND_USERS",
    "BROKER_ACCOUNT",
    "DEFAULT_LIMITS",
    "MONITOR_USERS",
    "WATCHED_TOPIC",
    "Account",
    "BackendTls",
    "BrokerCounters",
    "BrokerError",
    "BrokerLimits",
    "DropWatcher",
    "EmbeddedBroker",
    "MonitorIdentityError",
    "MqttCredentials",
    "PkiError",
    "acl_text",
    "apply_client_auth",
    "apply_client_tls",
    "check_port_free",
    "credentials_from_settings",
    "credentials_from_url",
    "default_broker_account",
    "derive_limits",
    "durability_config",
    "find_mosquitto",
    "free_port",
    "mosquitto_config",
    "parse_broker_url",
    "read_broker_counters",
    "redact_url",
    "serve_forever",
    "tls_from_settings",
    "tls_listener_config",
    "wait_for_port",
    "write_broker_config",
]
