"""Receipts: after each commit, tell every vehicle which of its messages the store now holds.

The broker's PUBACK to an agent proves only that the broker has the message in memory; a
broker that restarts without persistence, or drops messages beyond its queue while ingest is
down, has acknowledged messages that never reach the store. So ingest answers for the store
itself: once a batch is committed (and its PUBACKs sent), it publishes one receipt per vehicle
of the batch on that vehicle's receipt topic, at QoS 1, naming the ``msg_id`` of every message
of the vehicle the commit made durable, as landed, duplicate (an agent's re-send of a message
already stored) or dead-lettered (stored in ``dead_letters`` with its reason). The agent
deletes a spool entry only on its receipt and sends again what is not receipted in time.

The receipt goes to the vehicle of the *topic*, not of the payload: on the mutual-TLS broker
the ACL binds a vehicle's certificate to its own topics, so that is who sent it, even when its
payload claims another vehicle (a dead letter). A message whose id cannot be read (not JSON,
or cut because oversize with no id in its first bytes) cannot be receipted; its sender sends it
again until its own spool evicts it, and each copy is one more dead letter.

Nothing here touches the broker: :func:`build_receipts` turns a commit's outcomes into ``(topic,
payload)`` pairs for the ingest thread to publish, which keeps this testable on its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import orjson

from edge.wire import ContractError, contract

if TYPE_CHECKING:  # landing imports this module; the type alone is needed here
    from pipeline.ingest.landing import Prepared

Status = Literal["landed", "duplicate", "dead_letter"]

MAX_ID_CHARS: Final = 256
"""An id longer than this is no agent's (theirs are under 100 characters): not receipted."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a commit did with one message: whose it is (by topic), its id, and how it is kept."""

    vehicle_id: str
    msg_id: str
    status: Status


def outcomes_of(batch: Sequence[Prepared], landed: Iterable[int], duplicates: Iterable[int],
                dead_lettered: Iterable[int]) -> list[Outcome]:
    """The outcomes of the messages at these positions of a committed ``batch``.

    Messages without a readable id or a vehicle topic are left out (nothing to receipt).
    """
    found: list[Outcome] = []
    for positions, status in ((landed, "landed"), (duplicates, "duplicate"),
                              (dead_lettered, "dead_letter")):
        for index in positions:
            outcome = _outcome(batch[index], status)  # type: ignore[arg-type]
            if outcome is not None:
                found.append(outcome)
    return found


def _outcome(prepared: Prepared, status: Status) -> Outcome | None:
    item = prepared.item
    vehicle_id = contract.vehicle_of_topic(item.topic)
    if vehicle_id is None:
        return None
    msg_id = prepared.msg_id or contract.msg_id_of(item.payload) or ""
    if not msg_id or len(msg_id) > MAX_ID_CHARS:
        return None
    return Outcome(vehicle_id, msg_id, status)


def build_receipts(outcomes: Iterable[Outcome], *, now: float | None = None
                   ) -> list[tuple[str, bytes]]:
    """``(topic, payload)`` of the receipts for a commit's outcomes: one per vehicle, in the
    order the vehicles first appear, unless a vehicle's ids would make a receipt larger than
    about :data:`~edge.wire.contract.MAX_RECEIPT_BYTES` (then as many as it takes).
    """
    by_vehicle: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_vehicle.setdefault(outcome.vehicle_id, []).append(outcome)
    ts = time.time() if now is None else now
    wires: list[tuple[str, bytes]] = []
    for vehicle_id, mine in by_vehicle.items():
        try:
            topic = contract.receipt_topic(vehicle_id)
        except ContractError:
            continue  # a topic level no vehicle id can have: nobody to tell
        for chunk in _chunks(mine):
            receipt = contract.Receipt(
                f"receipt-{uuid.uuid4().hex}", vehicle_id, ts,
                landed=[o.msg_id for o in chunk if o.status == "landed"],
                duplicates=[o.msg_id for o in chunk if o.status == "duplicate"],
                dead_lettered=[o.msg_id for o in chunk if o.status == "dead_letter"])
            wires.append((topic, contract.encode_receipt(receipt)))
    return wires


def _chunks(outcomes: list[Outcome]) -> list[list[Outcome]]:
    """Split one vehicle's outcomes so the ids of each part fit one receipt."""
    parts: list[list[Outcome]] = [[]]
    size = 0
    for outcome in outcomes:
        cost = len(orjson.dumps(outcome.msg_id)) + 1
        if parts[-1] and size + cost > contract.MAX_RECEIPT_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(outcome)
        size += cost
    return parts
