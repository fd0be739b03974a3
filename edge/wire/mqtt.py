"""MQTT connection helpers both sides use: broker URLs, their redaction, TLS and the login.

The agent and the backend read the same kind of broker URL and must read it the same way:
a URL that works for a gateway has to work for ingest, with the same host, port and TLS flag.
So this module is the one reader (:func:`read_broker_url`), the one redactor
(:func:`redact_url`), the one TLS set-up (:func:`configure_client_tls`) and the one login
set-up (:func:`configure_login`); the agent calls them directly, the backend through
``pipeline.broker.auth``, which turns their :class:`~edge.errors.ConfigError` into its own
``BrokerError``.

How a client proves who it is to the broker: a client certificate (TLS, optionally with an
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

MQTT_PORT: Final = 1883
"""The port of ``mqtt://host`` (and ``tcp://``, bare ``host``) when the URL names none."""
MQTTS_PORT: Final = 8883
"""The port of ``mqtts://host`` (and ``ssl://``) when the URL names none."""
_TLS_BY_SCHEME: Final = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}
_FORMS: Final = (f"use mqtt://host:port, or mqtts://host:port for TLS (without a port: "
                 f"{MQTT_PORT} and {MQTTS_PORT})")

# The password runs to the last "@" before the path, as urlsplit reads it, so a password
# with a raw "@" is hidden whole; white space ends it, so URLs inside a sentence stay apart.
_USERINFO: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/\s]*)"
                              r"(?P<password>:[^/?#\s]*)?@")


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """A broker URL as both sides read it.

    Attributes:
        host: the broker's host name or address (lower case, IPv6 without brackets).
        port: the explicit port, else :data:`MQTT_PORT` or :data:`MQTTS_PORT`.
        tls: the scheme asks for TLS (``mqtts://`` or ``ssl://``).
        username, password: the percent-decoded ``user:password@`` part, if any.
    """

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: SecretStr | None = None

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``, what paho's ``connect`` takes."""
        return self.host, self.port


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


def read_broker_url(url: str) -> BrokerUrl:
    """Read ``mqtt://[user:password@]host[:port]`` (or ``tcp://``, ``mqtts://``, ``ssl://``,
    bare ``host[:port]``), ignoring surrounding white space.

    Raises:
        ConfigError: another scheme, no host, a port that is not 1 to 65535, or a path,
            query or fragment; one line that shows the URL with its password masked.
    """
    text = url.strip()
    shown = redact_url(text)
    try:
        parts = urlsplit(text if "://" in text else f"mqtt://{text}")
    except ValueError:  # an unclosed [IPv6 address
        raise ConfigError(f"broker URL {shown!r} has an invalid host; {_FORMS}") from None
    if parts.scheme not in _TLS_BY_SCHEME:
        raise ConfigError(f"broker URL {shown!r} has scheme {parts.scheme!r}; {_FORMS}")
    try:
        explicit = parts.port
    except ValueError:  # not a number, or above 65535
        explicit = 0
    if explicit == 0:
        raise ConfigError(f"broker URL {shown!r} has an invalid port (a number from 1 to "
                          f"65535, or none for the default); {_FORMS}")
    if not parts.hostname:
        raise ConfigError(f"broker URL {shown!r} has no host; {_FORMS}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"broker URL {shown!r} has a path, query or fragment, which a broker "
                          f"URL does not take; {_FORMS}")
    tls = _TLS_BY_SCHEME[parts.scheme]
    username = unquote(parts.username) if parts.username else None
    password = (SecretStr(unquote(parts.password))
                if username is not None and parts.password is not None else None)
    return BrokerUrl(parts.hostname, explicit or (MQTTS_PORT if tls else MQTT_PORT), tls,
                     username, password)


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """``(host, port)`` of a broker URL, read by :func:`read_broker_url` (same errors)."""
    return read_broker_url(url).address


def configure_tls(client: mqtt.Client, broker_url: str, tls: TlsFiles | None) -> None:
    """The agent's set-up of what the client proves itself with, before it connects.

    The login is the ``username``/``password`` of ``tls`` when it names a username, else the
    ``user:password@`` of ``broker_url``, else none (anonymous); TLS is as
    :func:`configure_client_tls` decides, with the agent's setting names in its errors.
    """
    files = tls or TlsFiles()
    configure_login(client, broker_url, files.username, files.password)
    configure_client_tls(client, broker_url, files.ca, files.cert, files.key,
                         files.key_password, password_setting="tls_key_password")


def configure_login(client: mqtt.Client, broker_url: str, username: str | None = None,
                    password: SecretStr | None = None) -> None:
    """``username_pw_set`` before ``connect``: the given ``username`` (with ``password``)
    wins, else the ``user:password@`` of ``broker_url``; with neither, nothing (anonymous).

    Raises:
        ConfigError: ``broker_url`` cannot be read (see :func:`read_broker_url`).
    """
    if not username:
        parsed = read_broker_url(broker_url)
        if parsed.username is None:
            return
        username, password = parsed.username, parsed.password
    client.username_pw_set(username, password.get_secret_value() if password else None)


def configure_client_tls(client: mqtt.Client, broker_url: str, ca: Path | None = None,
                         cert: Path | None = None, key: Path | None = None,
                         key_password: SecretStr | None = None, *,
                         password_setting: str = "the key password") -> None:
    """Switch TLS on, before ``connect``, for a TLS URL (``mqtts://``) or when any file is
    given: verify the broker against ``ca`` (the system's CAs without one) and present
    ``cert`` and ``key`` for mutual TLS.

    Args:
        password_setting: the setting that holds ``key_password`` on the caller's side,
            named in the error so the person reading it knows what to fix.

    Raises:
        ConfigError: ``broker_url`` cannot be read, a file is missing, or the certificate
            and key do not load; the message names the files, never the key's password.
    """
    wanted = read_broker_url(broker_url).tls
    if not (ca or cert or key):
        if wanted:
            client.tls_set()
        return
    for label, path in (("CA", ca), ("client certificate", cert), ("key", key)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"TLS {label} file {path} does not exist")
    password = key_password.get_secret_value() if key_password is not None else None
    # Never None: with None, OpenSSL asks for an encrypted key's password on the terminal,
    # and a service under systemd would hang there instead of failing with a clear error.
    try:
        client.tls_set(ca_certs=str(ca) if ca else None, certfile=str(cert) if cert else None,
                       keyfile=str(key) if key else None,
                       keyfile_password=password if password is not None else "")
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        hint = (f"is the key encrypted? set {password_setting}" if password is None
                else f"is {password_setting} the key's password?")
        raise ConfigError(f"cannot load the TLS certificate {cert} and key {key} "
                          f"({type(exc).__name__}: {_reason(exc)}); {hint}") from None


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``mqtt://gw1:***@host:1883``).

    Safe on anything, including text with several URLs in it: what is not a URL with a
    password comes back unchanged.
    """
    def hide(match: re.Match[str]) -> str:
        password = ":***" if match.group("password") is not None else ""
        return f"{match.group('scheme')}{match.group('user')}{password}@"

    return _USERINFO.sub(hide, url)


def _reason(exc: BaseException) -> str:
    """An OpenSSL error's reason without its arguments (never the password)."""
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or "rejected")
