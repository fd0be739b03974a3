"""Standard Webhooks signatures: what proves a webhook came from us and was not altered.

``webhook-signature`` is ``v1,`` + base64 HMAC-SHA256 of ``"{id}.{timestamp}.{body}"`` keyed
with the secret, written ``whsec_<base64 key>``. Several keys may be live during a rotation:
the sender signs with the newest (the last of the list it is given), a receiver accepts a
signature made with any of them, so a webhook signed before the rotation and retried after
it still verifies as long as the receiver lists both keys. Used in both directions: leads
out to the CRM, status updates in from it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets as _secrets
from collections.abc import Mapping, Sequence
from typing import Final

from pipeline.config import SECRET_PREFIX, SecretError, check_webhook_secrets
from pipeline.config import check_webhook_secret as check_secret
from pipeline.errors import TerminalPipelineError

__all__ = ["SECRET_PREFIX", "TOLERANCE_S", "SecretError", "SignatureError", "check_secret",
           "check_secrets", "key_list", "new_secret", "newest", "sign", "signed_headers",
           "verify"]

TOLERANCE_S: Final = 300.0
"""A receiver refuses timestamps further than this from its clock (replay protection)."""


class SignatureError(TerminalPipelineError):
    """A webhook failed verification; ``status`` is the HTTP status a receiver should answer."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


def new_secret() -> str:
    """A fresh random signing secret in ``whsec_<base64>`` form (24 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(24)).decode()


def check_secrets(secrets: str | Sequence[str]) -> list[str]:
    """The live keys (see :func:`key_list`), each checked with :func:`check_secret`.

    Raises:
        SecretError: no key is given, or one is malformed (the message says which, by
            position in the list, never by value).
    """
    keys = key_list(secrets)
    if not keys:
        raise SecretError("no webhook secret given: set FLEETCARE_PIPELINE__CRM_SECRET")
    check_webhook_secrets(keys)
    return keys


def key_list(secrets: str | Sequence[str]) -> list[str]:
    """The live keys, oldest first: a list, or one string of keys separated by spaces/commas.

    The string form is what ``FLEETCARE_PIPELINE__CRM_SECRET`` holds during a rotation.
    """
    if isinstance(secrets, str):
        return secrets.replace(",", " ").split()
    return list(secrets)


def newest(secrets: str | Sequence[str]) -> str:
    """The key a sender signs with: the only one, or the last (newest) of a rotation list."""
    keys = key_list(secrets)
    if not keys:
        raise ValueError("at least one webhook secret is needed")
    return keys[-1]


def sign(secret: str, msg_id: str, timestamp: int, body: str | bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for one message."""
    payload = body.decode() if isinstance(body, bytes) else body
    content = f"{msg_id}.{timestamp}.{payload}".encode()
    digest = hmac.new(check_secret(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secrets: str | Sequence[str], msg_id: str, timestamp: int,
                   body: str | bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with the newest key."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(newest(secrets), msg_id, timestamp, body)}


def verify(
    secrets: str | Sequence[str],
    headers: Mapping[str, str],
    body: str | bytes,
    now: dt.datetime | float,
    tolerance_s: float = TOLERANCE_S,
) -> str:
    """Check a received webhook; return its ``webhook-id`` when authentic and fresh.

    Accepts several secrets (key rotation) and several space-separated signatures.

    Raises:
        SignatureError: a header is missing or malformed (status 400), the timestamp is more
            than ``tolerance_s`` away from ``now`` (status 400), or no signature matches
            (status 401).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp = lower.get("webhook-id"), lower.get("webhook-timestamp")
    sigs = lower.get("webhook-signature")
    if not msg_id or not stamp or not sigs:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature", 400)
    try:
        ts = int(stamp)
    except ValueError:
        raise SignatureError(f"webhook-timestamp {stamp!r} is not Unix seconds", 400) from None
    clock = now.timestamp() if isinstance(now, dt.datetime) else float(now)
    if abs(clock - ts) > tolerance_s:
        raise SignatureError(
            f"webhook-timestamp {ts} is more than {tolerance_s:.0f} s from now", 400)
    keys = key_list(secrets)
    expected = {sign(k, msg_id, ts, body).split(",", 1)[1] for k in keys}
    for candidate in sigs.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and any(hmac.compare_digest(value, e) for e in expected):
            return msg_id
    raise SignatureError("no webhook-signature matches the body", 401)
