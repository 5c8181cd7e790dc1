"""The session actor: one per chat session, serialising its writes.

It keeps the session's snapshot (taken from every write's result) and
turns storage outcomes into replies or domain errors. The guards themselves
are in storage, so a second process holding an actor for the same session is
safe: a stale snapshot can only make a guard refuse, never let a write through.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors import metrics
from actors.actor import Actor, Command
from actors.errors import Conflict, NotFound, PermissionDenied
from storage.base import ChatStorage, RepliesByCallback, Reply, replies_by_callback
from storage.outcomes import ClaimOutcome, PostResult, SessionWrite, WriteOutcome
from storage.records import Admin, Session
from storage.workflow import ReadResult, StaleClaim, StaleCutoffs, TransferOutcome

SESSION_CLOSED = "Session is closed."
ALREADY_CLAIMED = "Session already claimed."
LIMIT_REACHED = "Session limit reached."


@dataclass(frozen=True)
class Claim(Command[Session]):
    """An admin takes an open session, within ``max_sessions`` (0: no limit)."""

    admin: Admin
    max_sessions: int


@dataclass(frozen=True)
class Release(Command[Session]):
    """The holder puts the session back in the queue."""

    admin_id: int


@dataclass(frozen=True)
class Close(Command[Session]):
    """The holder closes the session."""

    admin_id: int


@dataclass(frozen=True)
class PostAdminMessage(Command[PostResult]):
    """The holder writes; ``client_id`` makes a resend a no-op."""

    admin_id: int
    body: str
    client_id: str | None


@dataclass(frozen=True)
class PostStoreMessage(Command[PostResult]):
    """The store writes (opening a session when it has none)."""

    store_id: int
    body: str
    client_id: str | None


class SessionActor(Actor):
    """The one writer of a session in this process: runs its commands one at
    a time (messages may overlap messages), each as a guarded storage write."""

    def __init__(self, session_id: int, storage: ChatStorage, on_stored: Callable[[], None]):
        self.session_id = session_id
        self.storage = storage
        self.on_stored = on_stored  # wakes the event feed after each write
        self.session: Session | None = None
        # A backend that applies writes of one kind in the order they were
        # submitted lets queued commands of that kind share one commit.
        self._overlap = _OVERLAP if getattr(storage, "writes_in_submission_order", False) else {}
        self._replying: RepliesByCallback | None = storage if replies_by_callback(storage) else None

    async def on_start(self) -> None:
        """First start and every restart: nothing to load. Each command's guard
        reads storage itself and the snapshot refills from the next write's
        result; a read here cost a reader-thread round trip per session started."""
        self.session = None

    async def receive(self, command: Any) -> Any:
        """Runs for each command taken from the mailbox: its handler's result."""
        return await _HANDLERS[type(command)](self, command)

    def start_now(self, command: Any, reply: Any) -> bool:
        """A message goes to storage with a callback, when the backend takes
        one (SQLite's group commit): no coroutine per message. Its answer is
        judged exactly as ``receive`` judges it."""
        start = _STARTS_NOW.get(type(command))
        if start is None or self._replying is None:
            return False
        start(
            self._replying,
            self,
            command,
            lambda result, exc: self._post_started_now(result, exc, reply),
        )
        return True

    def _post_started_now(
        self, result: PostResult | None, exc: BaseException | None, reply: Any
    ) -> None:
        if exc is None and result is not None:
            try:
                result = self._finish_post(result)
            except Exception as refused:  # a refusal (Conflict...), or a bug
                exc, result = refused, None
        reply(result, exc)

    def overlap_key(self, command: Any) -> Any:
        """Queued claims, releases and closes overlap one another, and queued
        posts one another: their guards are in storage, which applies them in
        order, so ten admins racing for one session cost one commit, not ten."""
        return self._overlap.get(type(command))

    async def _claim(self, cmd: Claim) -> Session:
        result = await self.storage.claim_session(self.session_id, cmd.admin, cmd.max_sessions)
        if result.outcome in _CLAIM_METRIC_OUTCOME:  # a holder's retry is not a new claim
            metrics.CLAIMS.labels(_CLAIM_METRIC_OUTCOME[result.outcome]).inc()
        self._remember(result.session)
        if result.outcome is ClaimOutcome.WON:
            self.on_stored()
            metrics.MESSAGES.labels("system").inc()
            won = _stored(result.session)
            metrics.SESSION_WAIT.observe(_seconds_between(won.queued_at, won.updated))
            return _stored(result.session)
        if result.outcome is ClaimOutcome.ALREADY_HELD:
            return _stored(result.session)
        if result.outcome is ClaimOutcome.NOT_FOUND:
            raise NotFound()
        raise Conflict(
            {ClaimOutcome.CLOSED: SESSION_CLOSED, ClaimOutcome.LIMIT: LIMIT_REACHED}.get(
                result.outcome, ALREADY_CLAIMED
            )
        )

    async def _release(self, cmd: Release) -> Session:
        return self._finish_write(await self.storage.release_session(self.session_id, cmd.admin_id))

    async def _close(self, cmd: Close) -> Session:
        return self._finish_write(await self.storage.close_session(self.session_id, cmd.admin_id))

    async def _post_admin(self, cmd: PostAdminMessage) -> PostResult:
        result = await self.storage.post_admin_message(
            self.session_id, cmd.admin_id, cmd.body, cmd.client_id
        )
        return self._finish_post(result)

    async def _post_store(self, cmd: PostStoreMessage) -> PostResult:
        # Storage picks the store's active session itself, atomically: if this
        # one was closed a moment ago the message opens the next session.
        return self._finish_post(
            await self.storage.post_store_message(cmd.store_id, cmd.body, cmd.client_id)
        )

    def _finish_write(self, result: SessionWrite) -> Session:
        self._remember(result.session)
        raise_for_outcome(result.outcome)
        if result.outcome is WriteOutcome.DONE:
            self.on_stored()
            metrics.MESSAGES.labels("system").inc()
        return _stored(result.session)

    def _finish_post(self, result: PostResult) -> PostResult:
        if result.session is not None and result.session.id == self.session_id:
            self._remember(result.session)
        raise_for_outcome(result.outcome)
        if result.created:
            self.on_stored()
            record_new_message(result)
        return result

    def _remember(self, session: Session | None) -> None:
        if session is not None:
            self.session = session

    # --- the support workflow (issue 12) -------------------------------------
    async def _transfer(self, cmd: Transfer) -> Session:
        result = await self.storage.transfer_session(
            self.session_id, cmd.admin_id, cmd.target_id, cmd.max_sessions
        )
        self._remember(result.session)
        if result.outcome is TransferOutcome.DONE:
            self.on_stored()
            metrics.MESSAGES.labels("system").inc()
            metrics.TRANSFERS.inc()
            return _stored(result.session)
        if result.outcome is TransferOutcome.UNCHANGED:
            return _stored(result.session)
        if result.outcome in (TransferOutcome.NOT_FOUND, TransferOutcome.ADMIN_NOT_FOUND):
            raise NotFound()
        if result.outcome is TransferOutcome.FORBIDDEN:
            raise PermissionDenied()
        raise Conflict(LIMIT_REACHED if result.outcome is TransferOutcome.LIMIT else SESSION_CLOSED)

    async def _mark_read(self, cmd: MarkRead) -> ReadResult:
        result = await self.storage.mark_read(self.session_id, cmd.side, cmd.reader_id, cmd.seq)
        self._remember(result.session)
        raise_for_outcome(result.outcome)
        if result.moved:
            self.on_stored()
        return result

    async def _requeue(self, cmd: Requeue) -> bool:
        """Judged stale by a sweep: requeue unless it changed since (then no-op)."""
        result = await self.storage.requeue_session(cmd.stale, cmd.cutoffs)
        self._remember(result.session)
        if result.outcome is not WriteOutcome.DONE:
            return False
        self.on_stored()
        metrics.MESSAGES.labels("system").inc()
        metrics.REQUEUES.labels(cmd.stale.reason.value).inc()
        return True


_HANDLERS: dict[type, Callable[[SessionActor, Any], Any]] = {
    Claim: SessionActor._claim,
    Release: SessionActor._release,
    Close: SessionActor._close,
    PostAdminMessage: SessionActor._post_admin,
    PostStoreMessage: SessionActor._post_store,
}


_STARTS_NOW: dict[type, Callable[[RepliesByCallback, SessionActor, Any, Reply], None]] = {
    PostAdminMessage: lambda storage, actor, cmd, reply: storage.post_admin_message_with_reply(
        actor.session_id, cmd.admin_id, cmd.body, cmd.client_id, reply
    ),
    PostStoreMessage: lambda storage, actor, cmd, reply: storage.post_store_message_with_reply(
        cmd.store_id, cmd.body, cmd.client_id, reply
    ),
}

_OVERLAP: dict[type, str] = {
    Claim: "session",
    Release: "session",
    Close: "session",
    PostAdminMessage: "post",
    PostStoreMessage: "post",
}


def record_new_message(result: PostResult) -> None:
    """Count a newly stored message, and the first response time on an
    admin's first reply (runs once per message, after its commit)."""
    message, session = result.message, result.session
    if message is None or session is None:  # a created message comes with both
        return
    metrics.MESSAGES.labels(message.sender).inc()
    if (
        message.sender == "admin"
        and session.first_admin_reply_at == message.created
        and session.first_store_message_at
    ):
        metrics.FIRST_RESPONSE.observe(
            _seconds_between(session.first_store_message_at, message.created)
        )


def _stored(session: Session | None) -> Session:
    """The session a write that went through hands back (storage always
    does; a missing one is answered as not found rather than crashing)."""
    if session is None:
        raise NotFound()
    return session


def raise_for_outcome(outcome: WriteOutcome) -> None:
    """Turn a refused guarded write into the domain error API.md orders."""
    if outcome is WriteOutcome.NOT_FOUND:
        raise NotFound()
    if outcome is WriteOutcome.FORBIDDEN:
        raise PermissionDenied()
    if outcome is WriteOutcome.CLOSED:
        raise Conflict(SESSION_CLOSED)


_CLAIM_METRIC_OUTCOME = {
    ClaimOutcome.WON: "won",
    ClaimOutcome.CONFLICT: "conflict",
    ClaimOutcome.LIMIT: "limit",
    ClaimOutcome.NOT_FOUND: "not_found",
    ClaimOutcome.CLOSED: "closed",
}


def _seconds_between(earlier_iso: str, later_iso: str) -> float:
    parse = datetime.datetime.fromisoformat
    return max(0.0, (parse(later_iso.rstrip("Z")) - parse(earlier_iso.rstrip("Z"))).total_seconds())


# --- commands of the support workflow (issue 12) ------------------------------------
@dataclass(frozen=True)
class Transfer(Command[Session]):
    """The holder hands the session to another admin, within their limit."""

    admin_id: int
    target_id: int
    max_sessions: int


@dataclass(frozen=True)
class MarkRead(Command[ReadResult]):
    """One side has read up to ``seq``."""

    side: str  # "store" or "admin"
    reader_id: int
    seq: int


@dataclass(frozen=True)
class Requeue(Command[bool]):
    """The sweeper puts a stale claim back in the queue, if still stale."""

    stale: StaleClaim
    cutoffs: StaleCutoffs


# Run alone (no overlap key): each reads the session in its own guarded write.
_HANDLERS.update(
    {
        Transfer: SessionActor._transfer,
        MarkRead: SessionActor._mark_read,
        Requeue: SessionActor._requeue,
    }
)
