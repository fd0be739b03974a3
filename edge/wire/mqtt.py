"""MQTT connection options shared by the agent's clients: broker URLs, TLS and the login.

How a gateway proves who it is to the broker: a client certificate (TLS, optionally with an
encrypted key), an MQTT username and password (mosquitto's ``password_file``), or both. The
passwords arrive as ``SecretStr`` and are revealed only in the call that hands them to paho
or to OpenSSL. A broker URL may carry ``user:password@`` too; such a URL is itself a secret,
so anything that shows a URL passes it through :func:`redact_url` first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from pydantic import SecretStr

from edge.errors import ConfigError

_USERINFO: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/]*)"
                              r"(?P<password>:[^@/]*)?@")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """How the agent authenticates to the broker.

    The name dates from when this held only the PEM files; the publisher passes it whole to
    :func:`configure_tls`, so the login travels with it.

    Attributes:
        ca: the CA that signed the broker. cert, key: our client certificate and key.
        key_password: password of an encrypted ``key``.
        username, password: the MQTT login, sent in CONNECT.
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    key_password: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` (or ``tcp://``, ``mqtts://``, bare ``host:port``) to (host, port).

    A ``user:password@`` part is allowed; :func:`configure_tls` uses it.
    """
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl") or not parts.hostname:
        raise ConfigError(f"broker URL {redact_url(url)!r} is not of the form "
                          "mqtt://host:port (or mqtts://host:port for TLS)")
    default = 8883 if parts.scheme in ("mqtts", "ssl") else 1883
    return parts.hostname, parts.port or default


def configure_tls(client: mqtt.Client, broker_url: str, tls: TlsFiles | None) -> None:
    """Set up what the client proves itself with, before it connects.

    TLS is on for ``mqtts://`` or when certificate files are given. The login is the
    ``username``/``password`` of ``tls`` when it names a username, else the ``user:password@``
    of ``broker_url``, else none (anonymous).
    """
    configure_login(client, broker_url, tls)
    wants_tls = broker_url.startswith(("mqtts://", "ssl://"))
    if tls is None or not (tls.ca or tls.cert or tls.key):
        if wants_tls:
            client.tls_set()
        return
    for label, path in (("CA", tls.ca), ("client certificate", tls.cert), ("key", tls.key)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"TLS {label} file {path} does not exist")
    password = tls.key_password.get_secret_value() if tls.key_password else None
    # Never None: with None, OpenSSL asks for an encrypted key's password on the terminal,
    # and an agent under systemd would hang there instead of failing with a clear error.
    try:
        client.tls_set(ca_certs=str(tls.ca) if tls.ca else None,
                       certfile=str(tls.cert) if tls.cert else None,
                       keyfile=str(tls.key) if tls.key else None,
                       keyfile_password=password if password is not None else "")
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        hint = ("is the key encrypted? set tls_key_password" if password is None
                else "is tls_key_password the key's password?")
        raise ConfigError(f"cannot load the TLS certificate {tls.cert} and key {tls.key} "
                          f"({type(exc).__name__}: {_reason(exc)}); {hint}") from None


def configure_login(client: mqtt.Client, broker_url: str, tls: TlsFiles | None) -> None:
    """``username_pw_set`` from ``tls`` or from the URL's ``user:password@`` (see above)."""
    if tls is not None and tls.username:
        username, password = tls.username, tls.password
    else:
        parts = urlsplit(broker_url if "://" in broker_url else f"mqtt://{broker_url}")
        if parts.username is None:
            return
        username = unquote(parts.username)
        password = SecretStr(unquote(parts.password)) if parts.password is not None else None
    client.username_pw_set(username, password.get_secret_value() if password else None)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``mqtt://gw1:***@host:1883``).

    Safe on anything: a string that is not a URL comes back unchanged.
    """
    def hide(match: re.Match[str]) -> str:
        password = ":***" if match.group("password") is not None else ""
        return f"{match.group('scheme')}{match.group('user')}{password}@"

    return _USERINFO.sub(hide, url)


def _reason(exc: BaseException) -> str:
    """An OpenSSL error's reason without its arguments (never the password)."""
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or "rejected")
