"""How the backend's MQTT clients log in to the broker, and how broker URLs are shown safely.

A broker that allows anonymous clients lets anyone on the network read every vehicle's
telemetry, so a production broker asks for a username and password (mosquitto's
``password_file``), or a client certificate (:mod:`pipeline.broker.pki`). The password comes
from the settings (``FLEETCARE_PIPELINE__MQTT_PASSWORD`` or ``..._FILE``) as a ``SecretStr`` and is
revealed only in the call that hands it to paho. A URL such as ``mqtt://ingest:pw@host:1883``
is accepted too (its credentials apply when the settings name none), but such a URL is a
secret itself: pass every URL that may be printed through :func:`redact_url`.

Reading a URL, redacting it, and setting up TLS and the login are the agent's helpers from
:mod:`edge.wire.mqtt`, so a URL means the same to a gateway and to ingest; this module adds
the backend's settings-shaped records and turns the wire's ``ConfigError`` into
:class:`~pipeline.errors.BrokerError`, the backend's own error for a broker it cannot use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import paho.mqtt.client as mqtt
from pydantic import SecretStr

from edge.wire import ConfigError
from edge.wire.mqtt import (
    BrokerUrl,
    configure_client_tls,
    configure_login,
    read_broker_url,
    redact_url,
)
from pipeline.errors import BrokerError

if TYPE_CHECKING:
    from pipeline.config import PipelineSettings

__all__ = [
    "BackendTls",
    "MqttCredentials",
    "apply_client_auth",
    "apply_client_tls",
    "credentials_from_settings",
    "credentials_from_url",
    "parse_broker_url",
    "redact_url",
    "tls_from_settings",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _as_broker_error(call: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """``call(...)``, its ``ConfigError`` (edge's hierarchy) re-raised as ``BrokerError``.

    The message is kept whole: it is already the one line that says what to fix.
    """
    try:
        return call(*args, **kwargs)
    except ConfigError as exc:
        raise BrokerError(str(exc)) from None


def _read(url: str) -> BrokerUrl:
    return _as_broker_error(read_broker_url, url)


def parse_broker_url(url: str) -> tuple[str, int]:
    """``(host, port)`` of a broker URL, read exactly as the agent reads it.

    ``mqtt://host`` is port 1883, ``mqtts://host`` 8883 (TLS), an explicit port wins, and a
    ``user:password@`` part is allowed; ``tcp://``, ``ssl://`` and bare ``host:port`` work too.

    Raises:
        BrokerError: another scheme, no host, an invalid port, or a path; the message shows
            the URL with its password masked.
    """
    return _read(url).address


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
    """The ``user:password@`` part of a broker URL (percent-decoded), or None.

    Raises:
        BrokerError: the URL cannot be read (see :func:`parse_broker_url`).
    """
    parsed = _read(url)
    if parsed.username is None:
        return None
    return MqttCredentials(parsed.username, parsed.password)


def apply_client_auth(client: mqtt.Client, broker_url: str,
                      credentials: MqttCredentials | None = None) -> None:
    """Give paho the username and password to send in CONNECT (before ``connect``).

    Explicit ``credentials`` win; otherwise those embedded in ``broker_url``; with neither,
    the client connects anonymously.

    Raises:
        BrokerError: the URL cannot be read (see :func:`parse_broker_url`).
    """
    username = credentials.username if credentials is not None else None
    password = credentials.password if credentials is not None else None
    _as_broker_error(configure_login, client, broker_url, username, password)


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
    """Switch TLS on for ``mqtts://`` or when ``tls`` names files (before ``connect``), with
    :func:`edge.wire.mqtt.configure_client_tls`, the agent's own set-up.

    Raises:
        BrokerError: the URL cannot be read, a file is missing or the certificate and key
            do not load; the message names the files, never the key's password.
    """
    files = tls or BackendTls()
    _as_broker_error(configure_client_tls, client, broker_url, files.ca, files.cert,
                     files.key, files.key_password, password_setting="mqtt_tls_key_password")
