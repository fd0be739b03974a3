"""MQTT connection options shared by the agent's clients: broker URLs and TLS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from edge.errors import ConfigError


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for TLS: the CA that signed the broker, and our client certificate and key."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` (or ``tcp://``, ``mqtts://``, bare ``host:port``) to (host, port)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl") or not parts.hostname:
        raise ConfigError(f"broker URL {url!r} is not of the form mqtt://host:port "
                          "(or mqtts://host:port for TLS)")
    default = 8883 if parts.scheme in ("mqtts", "ssl") else 1883
    return parts.hostname, parts.port or default


def configure_tls(client: mqtt.Client, broker_url: str, tls: TlsFiles | None) -> None:
    """Turn TLS on for ``mqtts://`` or when certificate files are given."""
    wants_tls = broker_url.startswith(("mqtts://", "ssl://"))
    if tls is None or not (tls.ca or tls.cert or tls.key):
        if wants_tls:
            client.tls_set()
        return
    for label, path in (("CA", tls.ca), ("client certificate", tls.cert), ("key", tls.key)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"TLS {label} file {path} does not exist")
    client.tls_set(ca_certs=str(tls.ca) if tls.ca else None,
                   certfile=str(tls.cert) if tls.cert else None,
                   keyfile=str(tls.key) if tls.key else None)
