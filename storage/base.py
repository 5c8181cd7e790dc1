"""The storage contract: the ``ChatStorage`` protocol.

Every backend (``sqlite.py``, ``mongo.py``) implements ``ChatStorage`` and keeps
the rules stated on each method. The rules that make the server safe across
processes and nodes live here, not in the actors:

* a claim is one conditional write; the per-admin limit is checked inside it;
* a message's ``seq`` is allocated in the same atomic step that stores it, so
  a session's messages are numbered 1, 2, 3, ... with no gap and no repeat;
* a store has at most one open-or-claimed session, enforced by the database;
* ``client_id`` is unique per sender, enforced by the database;
* every state change and message appends an ``Event`` in the same atomic step,
  so what is stored and what is announced never disagree;
* a feed position (``FeedPosition``) is opaque above ``storage/``: an event id
  on SQLite, a change stream's resume token on MongoDB. Callers only keep the
  position of the last event they took, save it and hand it back;
* API keys are kept as SHA-256 digests, never in clear.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeGuard

from storage.outcomes import ClaimResult, PostResult, SessionWrite
from storage.records import (
    Admin,
    Event,
    FeedPosition,
    KeyChange,
    Message,
    Principal,
    Role,
    Session,
    Store,
)
from storage.workflow import (
    AdminPresence,
    OutboxEntry,
    ReadResult,
    StaleClaim,
    StaleCutoffs,
    TransferResult,
)

# Sizes of pages read from storage in one go (history replay, the change feed).
MAX_HISTORY_PAGE = 1000
MAX_LIST_PAGE = 200


# reply(result, error): how a write offered with a callback answers (once, on
# the event loop, after its commit).
Reply = Callable[[Any, BaseException | None], None]


class ChatStorage(Protocol):
    """What the actors need from a database. Every method is a coroutine.

    Methods that change a session take the caller's id and perform their
    permission check inside the same atomic write, so a stale in-memory
    snapshot can never let a write through.
    """

    async def setup(self) -> None:
        """Create tables/indexes. Runs once at start-up, before serving."""

    async def close(self) -> None:
        """Release connections. Runs at shutdown after actors have drained."""

    async def ping(self) -> None:
        """Raise ``StorageUnavailable`` unless the database answers."""

    # --- accounts -------------------------------------------------------
    async def create_admin(self, name: str, email: str | None) -> tuple[Admin, str]:
        """Store a new admin; return it with its key (the only time it is seen)."""

    async def create_store(
        self, name: str, email: str | None, logo_url: str | None
    ) -> tuple[Store, str]:
        """Store a new store; return it with its key."""

    async def authenticate(self, key: str) -> Principal | None:
        """The owner of ``key`` (looked up by digest), or None."""

    async def get_admin(self, admin_id: int) -> Admin | None:
        """The admin with this id, or None."""

    async def get_store(self, store_id: int) -> Store | None:
        """The store with this id, or None."""

    async def count_accounts(self) -> int:
        """Admins plus stores, so ``--demo`` can tell an empty database."""

    # --- sessions -------------------------------------------------------
    async def get_session(self, session_id: int) -> Session | None:
        """The session with this id, in any state, or None."""

    async def get_active_session(self, store_id: int) -> Session | None:
        """The store's open or claimed session, if any."""

    async def list_open_sessions(self, limit: int, after: tuple[str, int] | None) -> list[Session]:
        """The queue by ``(queued_at, id)`` ascending, strictly after ``after``."""

    async def list_admin_sessions(
        self, admin_id: int, limit: int, before: tuple[str, int] | None
    ) -> list[Session]:
        """Claimed sessions of an admin by ``(activity_at, id)`` descending."""

    async def list_store_sessions(
        self, store_id: int, limit: int, before: tuple[str, int] | None
    ) -> list[Session]:
        """Every session of a store, whatever its status and whoever held it,
        by ``(created, id)`` descending, strictly before ``before``."""

    async def count_open_sessions(self) -> int:
        """How many sessions wait in the queue (the queue-length gauge)."""

    async def claim_session(self, session_id: int, admin: Admin, max_sessions: int) -> ClaimResult:
        """Claim atomically: only an open session with no admin; a retry by the
        holder is ``ALREADY_HELD``; ``max_sessions`` (0 = none) is checked in
        the same write. On ``WON`` a system ``admin_connected`` message and a
        ``session_claimed`` event are stored with it."""

    async def release_session(self, session_id: int, admin_id: int) -> SessionWrite:
        """Give a held session back to the queue (status open, no admin)."""

    async def close_session(self, session_id: int, admin_id: int) -> SessionWrite:
        """Close a held session; a repeat by the closer is ``UNCHANGED``."""

    # --- messages -------------------------------------------------------
    async def post_admin_message(
        self, session_id: int, admin_id: int, body: str, client_id: str | None
    ) -> PostResult:
        """Append to a session the admin holds; allocate ``seq`` atomically."""

    async def post_store_message(
        self, store_id: int, body: str, client_id: str | None
    ) -> PostResult:
        """Append to the store's active session, opening one when there is
        none (the open and the first message are one atomic step)."""

    async def list_messages(self, session_id: int, after_seq: int, limit: int) -> list[Message]:
        """Messages with ``seq > after_seq`` in ``seq`` order, at most ``limit``."""

    # --- change feed ----------------------------------------------------
    async def append_typing(self, session: Session, sender: str) -> None:
        """Announce typing through the feed (nothing else is stored)."""

    async def feed_head(self) -> FeedPosition:
        """The position just after the newest event: where a new follower starts."""

    async def read_events(self, after: FeedPosition, limit: int) -> list[Event]:
        """Events stored after position ``after``, at most ``limit``, each with
        its ``position``: each session's events in the order their changes
        committed, whichever node stored them. A reader that hands back the
        position of the last event it took gets every later event once."""

    async def prune_events(self, older_than_secs: float) -> int:
        """Drop feed entries no follower still needs; return how many."""

    async def load_feed_position(self, node: str) -> FeedPosition | None:
        """The position ``node`` delivered up to, as saved before it stopped."""

    async def save_feed_position(self, node: str, position: FeedPosition) -> None:
        """Remember where ``node`` got to, so a restart continues from there."""

    # --- account administration (the CLI's list/rotate/revoke commands) -----
    async def list_admins(self) -> list[Admin]:
        """Every admin, by id."""

    async def list_stores(self) -> list[Store]:
        """Every store, by id."""

    async def rotate_key(self, role: Role, account_id: int) -> str | None:
        """Give the account a new key and return it (None: no such account).
        The old key stops authenticating with this write. A ``KeyChange`` is
        appended with it (in the same transaction where there are any, else
        right after), so a watcher that sees the change finds the old key
        already refused."""

    async def revoke_key(self, role: Role, account_id: int) -> bool:
        """Leave the account with no working key (False: no such account); a
        ``KeyChange`` is appended as for ``rotate_key``, which gives it a key
        again."""

    async def key_changes_head(self) -> FeedPosition:
        """The position after the newest ``KeyChange``: where a new watcher starts."""

    async def key_changes_since(self, after: FeedPosition) -> list[KeyChange]:
        """Key changes after position ``after`` in commit order, each with its
        ``position``, so every process can close the sockets opened with a
        key that no longer works."""

    # --- the support workflow (rules in storage/workflow.py) -----------------------
    async def transfer_session(
        self, session_id: int, admin_id: int, target_id: int, max_sessions: int
    ) -> TransferResult:
        """Hand a session ``admin_id`` holds to ``target_id`` in one guarded
        write, the target's ``max_sessions`` (0 = none) checked in it; with a
        system ``session_transferred`` message and event stored in the same step."""

    async def mark_read(self, session_id: int, side: str, reader_id: int, seq: int) -> ReadResult:
        """Raise ``side``'s read position to ``seq`` (capped at the last seq);
        never lower it. A raise stores a ``read`` event with it."""

    async def unread_counts(self, session_ids: list[int], side: str) -> dict[int, int]:
        """Per session: the other side's messages past ``side``'s read position."""

    async def read_positions(self, session_id: int) -> dict[str, int]:
        """``{"store": seq, "admin": seq}`` as far as each side has read."""

    async def set_presence_sockets(
        self, node: str, admin_id: int, sockets: int, live_after: float
    ) -> str | None:
        """Record how many sockets the admin has open on ``node`` (a heartbeat
        of that row); announce and return its presence if that changed."""

    async def set_admin_away(self, admin_id: int, away: bool, live_after: float) -> str | None:
        """The admin says it is away (or back); announce a change as above."""

    async def heartbeat_presence(
        self, node: str, sockets: dict[int, int], live_after: float
    ) -> list[tuple[int, str]]:
        """Rewrite ``node``'s rows from its open ``sockets`` per admin; announce
        every admin whose presence changed since (a dead node's admins going
        offline), each exactly once."""

    async def list_admins_with_presence(
        self, limit: int, after_id: int, live_after: float
    ) -> list[AdminPresence]:
        """Admins by id after ``after_id``, with presence and claimed sessions."""

    async def find_stale_claims(self, cutoffs: StaleCutoffs, limit: int) -> list[StaleClaim]:
        """Claimed sessions stale by ``cutoffs``, each with the state judged."""

    async def requeue_session(self, stale: StaleClaim, cutoffs: StaleCutoffs) -> SessionWrite:
        """Back to the queue (keeping ``queued_at``) only if nothing changed
        since judged stale; ``DONE`` for exactly one caller, else ``UNCHANGED``."""

    async def set_webhook_outbox(self, kinds: tuple[str, ...]) -> None:
        """From now on copy events of ``kinds`` into the outbox atomically with
        their change (runs at start-up; no kinds: stop and empty it)."""

    async def read_outbox(self, after_id: int, limit: int) -> list[OutboxEntry]:
        """Outbox entries after ``after_id`` in commit order."""

    async def load_webhook_cursor(self, hook: str) -> int:
        """The last outbox id delivered to ``hook`` (0: none yet)."""

    async def save_webhook_cursor(self, hook: str, last_id: int) -> None:
        """Advance ``hook``'s cursor (never backwards)."""

    async def prune_outbox(self, hooks: tuple[str, ...]) -> int:
        """Drop entries every one of ``hooks`` has delivered; return how many."""

    async def take_lease(self, name: str, holder: str, duration_secs: float) -> bool:
        """Take or renew the lease ``name`` for ``holder``; False while another
        holder's lease has not expired."""


class RepliesByCallback(Protocol):
    """The two message posts answered by a callback instead of a coroutine:
    optional, offered by a backend whose writes commit in groups (SQLite), so
    the message path makes no future or coroutine per message. ``reply`` runs
    exactly once, on the event loop, after the commit (``Reply``)."""

    def post_admin_message_with_reply(
        self, session_id: int, admin_id: int, body: str, client_id: str | None, reply: Reply
    ) -> None:
        """``ChatStorage.post_admin_message``, answered by ``reply``."""

    def post_store_message_with_reply(
        self, store_id: int, body: str, client_id: str | None, reply: Reply
    ) -> None:
        """``ChatStorage.post_store_message``, answered by ``reply``."""


def replies_by_callback(storage: object) -> TypeGuard[RepliesByCallback]:
    """Whether ``storage`` offers the posts answered by a callback."""
    return hasattr(storage, "post_store_message_with_reply")


class CommitsToListener(Protocol):
    """Optional: a backend that hands the events this process commits straight
    to the feed (SQLite's group commit), so they are delivered from the commit
    instead of read back. The feed then reads only other processes' events,
    never past one of its own groups not yet handed over."""

    def set_commit_listener(self, listener: Callable[[int, list[Event]], None] | None) -> None:
        """Call ``listener(prior_id, events)`` on the loop after each group this
        process commits (set by the feed at start, None at stop)."""

    def first_unannounced_event_id(self) -> int | None:
        """The smallest event id committed here not yet handed to the listener."""

    async def read_foreign_events(self, after_id: int, limit: int) -> list[Event]:
        """``read_events`` without the events this process wrote."""


def commits_to_listener(storage: object) -> TypeGuard[CommitsToListener]:
    """Whether ``storage`` hands this process's commits to a listener."""
    return hasattr(storage, "set_commit_listener")


class WakesTheFeed(Protocol):
    """Optional: a backend that says when any node's events can be read (a
    change stream on MongoDB), so the feed need not poll."""

    def set_event_wake(self, wake: Callable[[], None] | None) -> None:
        """Call ``wake`` whenever there are events to read (set by the feed at
        start, None at stop)."""


def wakes_the_feed(storage: object) -> TypeGuard[WakesTheFeed]:
    """Whether ``storage`` wakes the feed when events arrive."""
    return hasattr(storage, "set_event_wake")
