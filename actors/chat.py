"""``ChatService``: the one entry point handlers use for the chat's commands.

Writes go to the session's actor; reads go straight to storage, with the
access rule of API.md checked here so REST and WebSocket share it.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

from actors.actor import Command
from actors.errors import ActorStopped, ChatError, Conflict, NotFound, PermissionDenied
from actors.hub import SENDING_CONNECTION, Sender
from actors.presence import PresenceTracker
from actors.runtime import ActorSystem
from actors.session import (
    SESSION_CLOSED,
    Claim,
    Close,
    MarkRead,
    PostAdminMessage,
    PostStoreMessage,
    Release,
    Requeue,
    SessionActor,
    Transfer,
    record_new_message,
)
from storage.base import ChatStorage, Reply
from storage.outcomes import PostResult
from storage.records import Admin, Message, Principal, Role, Session, SessionStatus
from storage.workflow import AdminPresence, ReadResult, StaleClaim, StaleCutoffs

# A store's message is routed to its active session's actor; if that session is
# closed and a new one opened in between, the lookup is repeated this many times.
STORE_POST_ATTEMPTS = 3
# Stores whose current session id is remembered for routing (most recent kept).
STORE_ROUTES_KEPT = 50_000


@dataclass(frozen=True)
class ChatSettings:
    """The ``chat`` and ``actors`` settings the service needs."""

    max_sessions_per_admin: int = 0
    mailbox_size: int = 1000
    idle_timeout_secs: float = 300.0
    max_restarts: int = 3
    restart_window_secs: float = 60.0


class ChatService:
    """What handlers call: each command goes to its session's actor, which
    answers with a domain result or raises a ``ChatError``. ``on_stored``
    runs after every write, to wake the event feed."""

    def __init__(
        self,
        storage: ChatStorage,
        settings: ChatSettings,
        on_stored: Callable[[], None] = lambda: None,
    ):
        self.storage = storage
        self.settings = settings
        self.on_stored = on_stored
        self._store_sessions: collections.OrderedDict[int, int] = collections.OrderedDict()
        # SQLite's group commit answers writes by callback; MongoDB's are awaited.
        self._replies = hasattr(storage, "post_store_message_with_reply")
        self.actors: ActorSystem[int] = ActorSystem(
            lambda session_id: SessionActor(session_id, storage, on_stored),
            mailbox_size=settings.mailbox_size,
            idle_timeout_secs=settings.idle_timeout_secs,
            max_restarts=settings.max_restarts,
            restart_window_secs=settings.restart_window_secs,
        )

    # --- admin commands -----------------------------------------------------
    async def claim(self, admin: Principal, session_id: int) -> Session:
        """Give an open session to ``admin``; ``Conflict`` if another holds it,
        it is closed, or the admin is at the per-admin limit."""
        command = Claim(
            Admin(admin.id, admin.name, admin.email), self.settings.max_sessions_per_admin
        )
        return await self.actors.ask(session_id, command)

    async def release(self, admin: Principal, session_id: int) -> Session:
        """Put the admin's session back in the queue."""
        return await self.actors.ask(session_id, Release(admin.id))

    async def close(self, admin: Principal, session_id: int) -> Session:
        """Close the admin's session; the store's next message opens a new one."""
        return await self.actors.ask(session_id, Close(admin.id))

    async def post_admin_message(
        self, admin: Principal, session_id: int, body: str, client_id: str | None
    ) -> PostResult:
        """An admin's message in a session it holds, through the session's actor (answered from
        the socket's own path when it came on one)."""
        sender = SENDING_CONNECTION.get()
        if sender is None:
            return await self.actors.ask(session_id, PostAdminMessage(admin.id, body, client_id))
        sender.begin_post()
        result = None
        try:
            result = await self.actors.ask(session_id, PostAdminMessage(admin.id, body, client_id))
            return result
        finally:
            sender.end_post(result.message if result is not None else None)

    def post_admin_message_with_reply(
        self, admin: Principal, session_id: int, body: str, client_id: str | None, reply: Reply
    ) -> bool:
        """``post_admin_message`` answered by ``reply(result, error)`` (the
        WebSocket message path: no coroutine per message); False (and nothing
        done) when storage takes no callbacks: the caller awaits instead."""
        if not self._replies:
            return False
        self._ask_with_reply(
            session_id,
            PostAdminMessage(admin.id, body, client_id),
            _posted_from(SENDING_CONNECTION.get(), reply),
        )
        return True

    def _ask_with_reply(self, session_id: int, command: Command[PostResult], reply: Reply) -> None:
        try:
            self.actors.ask_with_reply(session_id, command, reply)
        except ChatError as exc:  # a full mailbox, or shutting down: answered at once
            reply(None, exc)

    # --- store commands -----------------------------------------------------
    async def post_store_message(
        self, store: Principal, body: str, client_id: str | None
    ) -> PostResult:
        """Send to the store's active session, opening one when it has none.

        From a socket, the socket's copy of the stored message is left out:
        the ack it gets carries the message (API.md "WebSocket").
        """
        sender = SENDING_CONNECTION.get()
        if sender is None:
            return await self._post_store_message(store, body, client_id)
        sender.begin_post()
        result = None
        try:
            result = await self._post_store_message(store, body, client_id)
            return result
        finally:
            sender.end_post(result.message if result is not None else None)

    def post_store_message_with_reply(
        self, store: Principal, body: str, client_id: str | None, reply: Reply
    ) -> bool:
        """``post_store_message`` answered by ``reply(result, error)``; False
        (and nothing done) when storage takes no callbacks, or while the
        store's session is not known here (its first message is awaited)."""
        session_id = self._store_sessions.get(store.id)
        if session_id is None or not self._replies:
            return False
        self._post_store_with_reply(
            session_id,
            PostStoreMessage(store.id, body, client_id),
            _posted_from(SENDING_CONNECTION.get(), reply),
            STORE_POST_ATTEMPTS,
        )
        return True

    def _post_store_with_reply(
        self, session_id: int, command: PostStoreMessage, reply: Reply, attempts: int
    ) -> None:
        def answer(result: PostResult | None, exc: BaseException | None) -> None:
            if isinstance(exc, ActorStopped) and attempts > 1:
                # The actor went (past its restart cap) with this message in
                # its mailbox: ask a fresh one at once, in the order the old
                # one answered, so the store's messages keep their order. The
                # session id only routes: storage picks the store's active
                # session itself.
                self._post_store_with_reply(session_id, command, reply, attempts - 1)
                return
            if result is not None:
                self._remember_store_session(command.store_id, result.session)
            reply(result, exc)

        self._ask_with_reply(session_id, command, answer)

    async def _post_store_message(
        self, store: Principal, body: str, client_id: str | None
    ) -> PostResult:
        for _attempt in range(STORE_POST_ATTEMPTS):
            session_id = self._store_sessions.get(store.id)
            if session_id is None:
                active = await self.storage.get_active_session(store.id)
                session_id = active.id if active else None
            if session_id is None:
                # No actor can hold a session that does not exist yet; storage
                # opens it and stores the first message in one atomic step.
                result = await self.storage.post_store_message(store.id, body, client_id)
                if result.created:
                    self.on_stored()
                    record_new_message(result)
            else:
                try:
                    result = await self.actors.ask(
                        session_id, PostStoreMessage(store.id, body, client_id)
                    )
                except ActorStopped:
                    self._store_sessions.pop(store.id, None)
                    continue
            self._remember_store_session(store.id, result.session)
            return result
        raise ActorStopped()

    def _remember_store_session(self, store_id: int, session: Session | None) -> None:
        """Route the store's next message straight to this session's actor
        (none came back: nothing to route by).

        Only a routing hint, saving a read per message: storage picks the
        store's active session itself, so a stale entry cannot misplace a
        message (it just costs one hop through an old session's actor).
        """
        if session is None:
            return
        if session.status is SessionStatus.CLOSED:
            self._store_sessions.pop(store_id, None)
            return
        self._store_sessions[store_id] = session.id
        self._store_sessions.move_to_end(store_id)
        if len(self._store_sessions) > STORE_ROUTES_KEPT:
            self._store_sessions.popitem(last=False)

    async def typing(self, who: Principal, session_id: int | None) -> None:
        """Tell the other side of a session that ``who`` is typing.

        A store types in its current session; an admin only in one it holds.
        """
        if who.role is Role.STORE:
            session = await self.current_store_session(who)
        else:
            if session_id is None:  # an admin's typing frame names its session
                raise NotFound()
            session = await self.readable_session(who, session_id)
            if session.admin_id != who.id:
                raise PermissionDenied()
        if session.status is SessionStatus.CLOSED:
            raise Conflict(SESSION_CLOSED)
        await self.storage.append_typing(session, who.role.value)
        self.on_stored()

    # --- reads -------------------------------------------------------------
    async def readable_session(self, who: Principal, session_id: int) -> Session:
        """The session if ``who`` may read it: its store; any admin while it is
        open; only the holding (or closing) admin once claimed."""
        session = await self.storage.get_session(session_id)
        if session is None:
            raise NotFound()
        if not may_read(who, session) and not await self._holds_store_of(who, session):
            raise PermissionDenied()
        return session

    async def _holds_store_of(self, who: Principal, session: Session) -> bool:
        """An admin holding a store's current session may read its earlier ones
        too (the console's store panel), whoever handled them."""
        if who.role is not Role.ADMIN:
            return False
        current = await self.storage.get_active_session(session.store_id)
        return current is not None and may_hold(who, current)

    async def store_sessions(
        self, admin: Principal, store_id: int, limit: int, before: tuple[str, int] | None
    ) -> list[Session]:
        """A store's sessions, newest first: for the admin holding its current
        session only (404 for no such store, then 403 for anyone else)."""
        if await self.storage.get_store(store_id) is None:
            raise NotFound()
        current = await self.storage.get_active_session(store_id)
        if current is None or not may_hold(admin, current):
            raise PermissionDenied()
        return await self.storage.list_store_sessions(store_id, limit, before)

    async def current_store_session(self, store: Principal) -> Session:
        """The store's open or claimed session, or ``NotFound``."""
        session = await self.storage.get_active_session(store.id)
        if session is None:
            raise NotFound()
        return session

    async def history(
        self, session_id: int, after_seq: int, limit: int
    ) -> tuple[list[Message], bool]:
        """One page of messages after ``after_seq``, and whether more follow."""
        messages = await self.storage.list_messages(session_id, after_seq, limit + 1)
        return messages[:limit], len(messages) > limit

    async def open_sessions(self, limit: int, after: tuple[str, int] | None) -> list[Session]:
        """One page of the queue, oldest first, after the cursor ``after``."""
        return await self.storage.list_open_sessions(limit, after)

    async def admin_sessions(
        self, admin: Principal, limit: int, before: tuple[str, int] | None
    ) -> list[Session]:
        """One page of the sessions ``admin`` holds, latest activity first, before the cursor."""
        return await self.storage.list_admin_sessions(admin.id, limit, before)

    async def shutdown(self, timeout_secs: float) -> None:
        """Drain every actor's mailbox, then stop them (graceful shutdown)."""
        await self.actors.stop_all(timeout_secs)

    # --- the support workflow (issue 12) ---------------------------------------
    # Set by the server: the process's presence tracker (actors/presence.py).
    presence: PresenceTracker | None = None

    async def transfer(self, admin: Principal, session_id: int, target_id: int) -> Session:
        """The holder hands the session to ``target_id`` (one guarded write)."""
        return await self.actors.ask(
            session_id, Transfer(admin.id, target_id, self.settings.max_sessions_per_admin)
        )

    async def mark_read(self, who: Principal, session_id: int, seq: int) -> ReadResult:
        """Raise ``who``'s side's read position in the session to ``seq``."""
        return await self.actors.ask(session_id, MarkRead(who.role.value, who.id, seq))

    async def with_unread(
        self, who: Principal, sessions: list[Session]
    ) -> list[tuple[Session, int]]:
        """Each session with ``who``'s side's unread count."""
        counts = await self.storage.unread_counts([s.id for s in sessions], who.role.value)
        return [(s, counts.get(s.id, 0)) for s in sessions]

    async def read_positions(self, session_id: int) -> dict[str, int]:
        """How far each side has read (0: nothing yet), for "Seen" after a reload."""
        positions = await self.storage.read_positions(session_id)
        return {side: positions.get(side, 0) for side in ("store", "admin")}

    async def admins_with_presence(self, limit: int, after_id: int) -> list[AdminPresence]:
        """A page of admins by id, with presence and the sessions each holds."""
        if self.presence is None:
            raise RuntimeError("the server sets ChatService.presence before serving")
        return await self.storage.list_admins_with_presence(
            limit, after_id, self.presence.live_after()
        )

    async def requeue(self, stale: StaleClaim, cutoffs: StaleCutoffs) -> bool:
        """A sweep found ``stale``; the session's actor tries the guarded requeue."""
        return await self.actors.ask(stale.session_id, Requeue(stale, cutoffs))


def _posted_from(sender: Sender | None, reply: Reply) -> Reply:
    """``reply``, told to the hub first when a socket sent the message: its
    frames are held while the message is stored, and its own copy left out
    (the ack carries it)."""
    if sender is None:
        return reply
    sender.begin_post()

    def answer(result: PostResult | None, exc: BaseException | None) -> None:
        sender.end_post(result.message if result is not None else None)
        reply(result, exc)

    return answer


def may_read(who: Principal, session: Session) -> bool:
    """Whether ``who`` may read the session: its store, any admin while it is queued, else only
    its holder."""
    if who.role is Role.STORE:
        return session.store_id == who.id
    return session.status is SessionStatus.OPEN or session.admin_id == who.id


def may_hold(who: Principal, session: Session) -> bool:
    """``who`` is the admin holding ``session`` now (claimed, not closed)."""
    return (
        who.role is Role.ADMIN
        and session.status is SessionStatus.CLAIMED
        and session.admin_id == who.id
    )
