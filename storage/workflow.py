"""Records and shared rules of the support workflow past the claim (issue 12).

Transfer, read state, presence, stale-claim requeue and the webhook outbox.
Each decision is one guarded write in the backend (``sqlite.py``, ``mongo.py``);
what both backends classify or compute the same way lives here, so they agree.

Rules every backend keeps:

* a transfer is one conditional write matching only the caller's claimed
  session, with the target's ``max_sessions_per_admin`` checked in it;
* a read position only moves forward (a lower ``seq`` changes nothing);
* presence is computed from heartbeats in storage: a node's sockets count only
  while its rows were refreshed after ``live_after``; a change of an admin's
  effective presence is announced once, by a conditional write on the
  admin's ``announced`` status, whichever process sees it first;
* a stale claim goes back to the queue only if the session is exactly as it
  was when judged stale (same holder, ``last_seq`` and ``updated``) and, for
  an offline holder, the holder is still offline; ``queued_at`` is kept;
* webhook-relevant events are copied to a durable outbox in the same atomic
  step that stores them; deliveries follow a per-hook cursor under a lease.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Any

from storage.documents import session_to_doc
from storage.records import Admin, Session, SessionStatus

ONLINE, AWAY, OFFLINE = "online", "away", "offline"
PRESENCE_STATUSES = (ONLINE, AWAY, OFFLINE)

# Events a webhook may subscribe to (API.md "Webhooks").
WEBHOOK_EVENTS = (
    "session_opened",
    "session_claimed",
    "session_transferred",
    "session_released",
    "session_closed",
    "message",
)


class TransferOutcome(str, enum.Enum):
    """How a transfer ended: done, or why not."""

    DONE = "done"
    UNCHANGED = "unchanged"  # the caller handed it to itself
    NOT_FOUND = "not_found"
    ADMIN_NOT_FOUND = "admin_not_found"
    FORBIDDEN = "forbidden"  # the caller does not hold it
    CLOSED = "closed"
    LIMIT = "limit"  # the target is at max_sessions_per_admin


@dataclass(frozen=True)
class TransferResult:
    """A transfer's outcome and the session as it stands after it."""

    outcome: TransferOutcome
    session: Session | None


def why_transfer_refused(
    session: Session | None, caller_id: int, target: Admin | None
) -> TransferOutcome | None:
    """Why a transfer cannot be tried at all, in API.md's order (404, 403,
    409), or None: then only the guarded write (the limit) can refuse it."""
    if session is None or target is None:
        return TransferOutcome.NOT_FOUND if session is None else TransferOutcome.ADMIN_NOT_FOUND
    if session.admin_id != caller_id or session.status is SessionStatus.OPEN:
        return TransferOutcome.FORBIDDEN
    if session.status is SessionStatus.CLOSED:
        return TransferOutcome.CLOSED
    if target.id == caller_id:
        return TransferOutcome.UNCHANGED
    return None


def transfer_payload(session: Session, from_admin: Admin, to_admin: Admin) -> dict[str, Any]:
    """The ``session_transferred`` event's payload (the hub's and webhooks')."""
    return {
        "session": session_to_doc(session),
        "from_admin": {"id": from_admin.id, "name": from_admin.name},
        "admin": {"id": to_admin.id, "name": to_admin.name},
    }


@dataclass(frozen=True)
class ReadResult:
    """A read mark: ``seq`` is the side's position after it; ``moved`` whether
    this call advanced it (and so announced a ``read`` event)."""

    outcome: Any  # storage.outcomes.WriteOutcome
    seq: int = 0
    moved: bool = False
    session: Session | None = None


def may_mark_read(session: Session, side: str, reader_id: int) -> bool:
    """The store reads its own sessions; an admin those it holds or closed."""
    if side == "store":
        return session.store_id == reader_id
    return session.status is not SessionStatus.OPEN and session.admin_id == reader_id


def other_side(side: str) -> str:
    """The side that is not ``side`` ("store" <-> "admin")."""
    return "admin" if side == "store" else "store"


@dataclass(frozen=True)
class AdminPresence:
    """An admin as the transfer picker shows it: presence and the sessions it holds."""

    admin: Admin
    presence: str
    active_sessions: int


def effective_presence(live: bool, away: bool) -> str:
    """An admin's presence from its heartbeats and its own choice: offline, away or online."""
    if not live:
        return OFFLINE
    return AWAY if away else ONLINE


class RequeueReason(str, enum.Enum):
    """Why a claimed session was judged stale and put back in the queue."""

    OFFLINE = "offline"  # the holder has been offline too long
    UNANSWERED = "unanswered"  # the store's last message waited too long for a reply


REQUEUE_BODIES = {
    RequeueReason.OFFLINE: "The session went back to the queue: its admin went offline",
    RequeueReason.UNANSWERED: "The session went back to the queue: it waited too long for a reply",
}


@dataclass(frozen=True)
class StaleCutoffs:
    """What "stale" means at one sweep (epoch seconds; None = that rule is off)."""

    offline_before: float | None
    unanswered_before: float | None
    live_after: float


@dataclass(frozen=True)
class StaleClaim:
    """A claimed session judged stale, with the state it was judged in: the
    requeue only succeeds if all of it is still true."""

    session_id: int
    admin_id: int
    last_seq: int
    updated: str
    reason: RequeueReason


@dataclass(frozen=True)
class OutboxEntry:
    """One outbox entry: an event copied for webhook delivery, in commit order."""

    id: int
    kind: str
    session_id: int
    payload: dict[str, Any]
    created: float  # epoch seconds of the commit


def iso_from_epoch(epoch: float) -> str:
    """Epoch seconds as the fixed-width text timestamps are stored in, so the
    two compare as text (``storage.records.utc_now_iso``)."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
