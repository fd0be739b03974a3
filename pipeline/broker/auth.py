"""How the backend's MQTT clients log in to the broker, and how broker URLs are shown safely.

A broker that allows anonymous clients lets anyone on the network read every vehicle's
telemetry, so a production broker asks for a username and password (mosquitto's
``password_file``), or a client certificate (:mod:`pipeline.broker.pki`). The password comes
from the settings (``FLEETCARE_PIPELINE__MQTT_PASSWORD`` or ``..._FILE``) as a ``SecretStr`` and is
revealed only in the call that hands it to paho. A URL such as ``mqtt://ingest:pw@host:1883``
is accepted too (its credentials apply when the settings name none), but such a URL is a
secret itself: pass every URL that may be printed through :func:`redact_url`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from pydantic import SecretStr

from pipeline.errors import BrokerError

if TYPE_CHECKING:
    from pipeline.config import PipelineSettings

_USERINFO: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/]*)"
                              r"(?P<password>:[^@/]*)?@")
REDACTED: Final = "***"


@dataclass(frozen=True, slots=True)
class MqttCredentials:
    """An MQTT username and its password (the password stays wrapped until paho gets it)."""

    username: str
    password: SecretStr | None = None

    def __repr__(self) -> str:
        shown = "None" if self.password is None else repr(self.password)
        return f"MqttCredentials(username={self.username!r}, password={shown})"


def credentials_from_settings(settings: PipelineSettings) -> MqttCredentials | None:
    """The login the settings name (``mqtt_username``/``mqtt_password``), or None."""
    if not settings.mqtt_username:
        return None
    return MqttCredentials(settings.mqtt_username, settings.mqtt_password)


def credentials_from_url(url: str) -> MqttCredentials | None:
    """The ``user:password@`` part of a broker URL (percent-decoded), or None."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.username is None:
        return None
    password = SecretStr(unquote(parts.password)) if parts.password is not None else None
    return MqttCredentials(unquote(parts.username), password)


def apply_client_auth(client: mqtt.Client, broker_url: str,
                      credentials: MqttCredentials | None = None) -> None:
    """Give paho the username and password to send in CONNECT (before ``connect``).

    Explicit ``credentials`` win; otherwise those embedded in ``broker_url``; with neither,
    the client connects anonymously, as before.
    """
    login = credentials or credentials_from_url(broker_url)
    if login is None:
        return
    password = login.password.get_secret_value() if login.password is not None else None
    client.username_pw_set(login.username, password)


@dataclass(frozen=True, slots=True)
class BackendTls:
    """The backend's side of mutual TLS: the broker's CA, our certificate and its key.

    The backend's certificate is issued like a vehicle's (``fleetcare pki issue DIR
    fleetcare-ingest``); the generated ACL lets that name read every vehicle's topics.
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    key_password: SecretStr | None = None


def tls_from_settings(settings: PipelineSettings) -> BackendTls | None:
    """The certificate files the settings name (``mqtt_tls_*``), or None for none."""
    if not (settings.mqtt_tls_ca or settings.mqtt_tls_cert or settings.mqtt_tls_key):
        return None
    return BackendTls(settings.mqtt_tls_ca, settings.mqtt_tls_cert, settings.mqtt_tls_key,
                      settings.mqtt_tls_key_password)


def apply_client_tls(client: mqtt.Client, broker_url: str, tls: BackendTls | None) -> None:
    """Switch TLS on for ``mqtts://`` or when ``tls`` names files (before ``connect``).

    Raises:
        BrokerError: a file is missing or the certificate and key do not load; the message
            names the files, never the key's password.
    """
    wants_tls = broker_url.startswith(("mqtts://", "ssl://"))
    if tls is None or not (tls.ca or tls.cert or tls.key):
        if wants_tls:
            client.tls_set()
        return
    for label, path in (("CA", tls.ca), ("client certificate", tls.cert), ("key", tls.key)):
        if path is not None and not path.is_file():
            raise BrokerError(f"TLS {label} file {path} does not exist")
    password = tls.key_password.get_secret_value() if tls.key_password is not None else ""
    # "" rather than None: with None OpenSSL would prompt on the terminal for an encrypted
    # key's password, and a service would hang there instead of failing.
    try:
        client.tls_set(ca_certs=str(tls.ca) if tls.ca else None,
                       certfile=str(tls.cert) if tls.cert else None,
                       keyfile=str(tls.key) if tls.key else None, keyfile_password=password)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise BrokerError(f"cannot load the TLS certificate {tls.cert} and key {tls.key} "
                          f"({type(exc).__name__}); is mqtt_tls_key_password right?") from None


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``mqtt://ingest:***@host:1883``).

    Safe on anything: a string that is not a URL comes back unchanged.
    """
    def hide(match: re.Match[str]) -> str:
        password = f":{REDACTED}" if match.group("password") is not None else ""
        return f"{match.group('scheme')}{match.group('user')}{password}@"

    return _USERINFO.sub(hide, url)
