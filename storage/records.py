"""The records storage hands up: accounts, sessions, messages, feed events.

Frozen dataclasses, the same from every backend; ``storage/documents.py`` has
their plain-dict forms. Timestamps are text (``utc_now_iso``) so that text
order is time order.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field
from typing import Any

# Where a reader of the change feed (or of the key changes) stands: opaque
# above storage/, and stored as is (an int on SQLite, a dict on MongoDB).
FeedPosition = Any


def utc_now_iso() -> str:
    """Now, as the fixed-width ISO 8601 text every timestamp is stored as.

    Fixed width (always microseconds) so that text order is time order, which
    the queue's cursor paging relies on.
    """
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Role(str, enum.Enum):
    """Which kind of account a key belongs to."""

    ADMIN = "admin"
    STORE = "store"


class SessionStatus(str, enum.Enum):
    """Where a session is: in the queue, held by an admin, or ended."""

    OPEN = "open"
    CLAIMED = "claimed"
    CLOSED = "closed"


@dataclass(frozen=True)
class Admin:
    """A support admin's account (its key is kept apart, as a digest)."""

    id: int
    name: str
    email: str | None


@dataclass(frozen=True)
class Store:
    """A store's account (its key is kept apart, as a digest)."""

    id: int
    name: str
    email: str | None
    logo_url: str | None


@dataclass(frozen=True)
class Principal:
    """Who is asking: the owner of an API key."""

    role: Role
    id: int
    name: str
    email: str | None = None
    logo_url: str | None = None


@dataclass(frozen=True)
class Session:
    """One support conversation of a store, as stored; its ``store`` is embedded."""

    id: int
    store: Store
    admin_id: int | None
    status: SessionStatus
    last_message_at: str | None
    created: str
    updated: str
    # When the session (re)entered the queue: the open list's order and cursor.
    queued_at: str
    # Latest message or state change: the order of an admin's "My Sessions".
    activity_at: str
    last_seq: int = 0
    # For the first-response metric; kept in the record so every process agrees.
    first_store_message_at: str | None = None
    first_admin_reply_at: str | None = None

    @property
    def store_id(self) -> int:
        """The id of the store whose session this is."""
        return self.store.id

    @property
    def is_active(self) -> bool:
        """Whether the session is open or claimed (not closed)."""
        return self.status is not SessionStatus.CLOSED


@dataclass(frozen=True)
class Message:
    """One message of a session, numbered by ``seq`` (1, 2, 3... with no gap)."""

    id: int
    session_id: int
    seq: int
    sender: str  # "store", "admin" or "system"
    sender_id: int | None
    body: str
    client_id: str | None
    created: str
    event: str | None = None  # set on system messages only


@dataclass(frozen=True)
class Event:
    """One entry of the change feed, appended with the change it reports.

    ``kind`` is a WebSocket event type (``message``, ``session_opened``,
    ``session_claimed``, ``session_released``, ``session_closed``, ``typing``).
    ``store_id`` and ``admin_id`` name the audience inside the session: the
    store, and the admin who holds (or, for a release, held) it. ``id`` is the
    event's own (unique, not ordered across nodes); ``position`` is where a
    reader stands once it has taken this event (set on events read from the
    feed; opaque).
    """

    id: int
    kind: str
    session_id: int
    store_id: int
    admin_id: int | None
    payload: dict[str, Any] = field(default_factory=dict)
    position: FeedPosition = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class KeyChange:
    """An account's key was rotated or revoked (``kind``: "rotated" or "revoked")."""

    id: int
    role: Role
    account_id: int
    kind: str
    position: FeedPosition = field(default=None, compare=False, repr=False)
