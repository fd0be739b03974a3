"""Talking to the service centre's CRM: the outbox and its signed webhook delivery,
the payload adapters, and the inbound endpoint for status updates.
"""

from pipeline.crm.adapters import adf_xml, render, salesforce_composite
from pipeline.crm.http_server import (
    MAX_BODY,
    MAX_CONNECTIONS,
    REQUEST_TIMEOUT_S,
    BodyRefused,
    HttpServerError,
    JsonHttpServer,
)
from pipeline.crm.inbound import INBOUND_PATH, InboundError, Inbox, StatusUpdate, inbound_server
from pipeline.crm.outbox import (
    RETRY_WINDOW,
    DeliveryReport,
    SignatureError,
    backoff_s,
    check_endpoint,
    deliver_outbox,
    new_secret,
    sign,
    verify,
)
from pipeline.crm.problems import schema_problems
from pipeline.crm.signing import SecretError, check_secrets, key_list, newest, signed_headers
from pipeline.errors import DeliveryError, RejectedError

__all__ = [
    "INBOUND_PATH",
    "MAX_BODY",
    "MAX_CONNECTIONS",
    "REQUEST_TIMEOUT_S",
    "RETRY_WINDOW",
    "BodyRefused",
    "DeliveryError",
    "DeliveryReport",
    "HttpServerError",
    "InboundError",
    "Inbox",
    "JsonHttpServer",
    "RejectedError",
    "SecretError",
    "SignatureError",
    "StatusUpdate",
    "adf_xml",
    "backoff_s",
    "check_endpoint",
    "check_secrets",
    "deliver_outbox",
    "inbound_server",
    "key_list",
    "new_secret",
    "newest",
    "render",
    "salesforce_composite",
    "schema_problems",
    "sign",
    "signed_headers",
    "verify",
]
