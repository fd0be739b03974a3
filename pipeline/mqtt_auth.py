"""How the backend's MQTT clients log in to the broker, and how broker URLs are shown safely.

A broker that allows anonymous clients lets anyone on the network read every vehicle's
telemetry, so a production broker asks for a username and password (mosquitto's
``password_file``), or a client certificate (:mod:`pipeline.pki`). The password comes from the
settings (``FLEETCARE_PIPELINE__MQTT_PASSWORD`` or ``..._FILE``) as a ``SecretStr`` and is
revealed only in the call that hands it to paho. A URL such as ``mqtt://ingest:pw@host:1883``
is accepted too (its credentials apply when the settings name none), but such a URL is a
secret itself: pass every URL that may be printed through :func:`redact_url`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from pydantic import SecretStr

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


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``mqtt://ingest:***@host:1883``).

    Safe on anything: a string that is not a URL comes back unchanged.
    """
    def hide(match: re.Match[str]) -> str:
        password = f":{REDACTED}" if match.group("password") is not None else ""
        return f"{match.group('scheme')}{match.group('user')}{password}@"

    return _USERINFO.sub(hide, url)
