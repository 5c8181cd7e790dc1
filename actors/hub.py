"""The hub: this process's WebSocket connections, and the fan-out of events.

The hub never touches the network itself. A connection registers a ``send``
callable that must not block (the WebSocket handler queues the frame and cuts
the client off if its buffer grows past the bound), so one slow client can
never hold up the feed, the actors, or other clients.

Connections are known by id only; every index here holds ids, and a delivery to
an id that has gone is skipped.

Ordering: ``publish`` is called in commit order (the feed merges this
process's commits with what others stored). For each socket and session the
hub remembers the last ``seq`` sent and drops anything at or below it, and
while the socket is replaying history (``resume``) it holds live messages
back; together these give "each ``seq`` exactly once, in order".

A socket's own message: while the service stores it (``begin_post`` ..
``end_post``) the socket's frames are held; then the stored copy of its own
message is dropped (its ``ack`` carries it) and the frames before it go out,
before the ack. A socket may have several messages being stored at once (it
need not wait for an ack to send again): each ``end_post`` releases the held
frames up to that message's copy, so every frame and ack leaves in seq order.
"""

from __future__ import annotations

import collections
import contextvars
from collections.abc import Callable, Iterable
from typing import Any

from storage.documents import session_from_doc
from storage.records import Event, Message, Role


class Frame:
    """One outgoing event; its encodings are cached, so a frame sent to a
    thousand sockets is rendered and encoded once per subprotocol."""

    __slots__ = ("encoded", "fields", "type")

    def __init__(self, type: str, **fields: Any):
        self.type = type
        self.fields = fields
        self.encoded: dict[str, Any] = {}


class Subscriber:
    """The hub's view of one socket (slots and lazily made maps: a server
    holds one per idle connection)."""

    __slots__ = (
        "acked",
        "close",
        "conn_id",
        "held",
        "last_seq",
        "posting",
        "principal_id",
        "replaying",
        "role",
        "send",
        "watching",
    )

    def __init__(
        self,
        conn_id: int,
        role: Role,
        principal_id: int,
        send: Callable[[Frame], None],
        close: Callable[[int, str], None],
    ):
        self.conn_id = conn_id
        self.role = role
        self.principal_id = principal_id
        self.send = send
        self.close = close
        self.last_seq: dict[int, int] = {}
        self.replaying: dict[int, list[tuple[int, Frame]]] | None = None
        self.watching: set[int] | None = None
        # While the socket has a message of its own being stored, frames for it
        # wait in ``held`` (in order), so the stored copy of its own message can
        # be left out: its ack carries it. ``acked`` remembers acks whose copy
        # had not arrived yet (a feed that delivers after the ack).
        self.posting = 0
        self.held: list[Frame] = []
        self.acked: collections.deque[int] | None = None

    def deliver(self, frame: Frame) -> None:
        """Send ``frame`` to this socket now, or hold it while the socket's own message is being
        stored."""
        if self.posting:
            self.held.append(frame)
        else:
            self.send(frame)


class Sender:
    """The socket a command came from, for the hub: ``ChatService`` marks the
    start and end of storing that socket's message with it."""

    __slots__ = ("conn_id", "hub")

    def __init__(self, hub: Hub, conn_id: int):
        self.hub = hub
        self.conn_id = conn_id

    def begin_post(self) -> None:
        """Runs when storing this socket's message starts: frames for it wait until ``end_post``."""
        self.hub.begin_post(self.conn_id)

    def end_post(self, message: Message | None) -> None:
        """Runs when storing this socket's message ended (``message``: the stored one, None if it
        failed): the held frames go out."""
        self.hub.end_post(self.conn_id, message)


# Set by a socket for the frame handlers it runs (each runs in a copy of the
# socket's context); None for REST requests.
SENDING_CONNECTION: contextvars.ContextVar[Sender | None] = contextvars.ContextVar(
    "sending_connection", default=None
)
# Acks remembered per socket whose stored copy had not been delivered yet.
ACKED_KEPT = 32


class Hub:
    """This process's open sockets and who they belong to: delivers each frame to the sockets of
    its audience."""

    def __init__(self) -> None:
        self._subs: dict[int, Subscriber] = {}
        self._admins: set[int] = set()
        # Keyed by account id; looked up with an event's ids, which are None
        # for a session no admin holds (such a lookup finds nothing).
        self._by_store: dict[int | None, set[int]] = collections.defaultdict(set)
        self._by_admin: dict[int | None, set[int]] = collections.defaultdict(set)
        self._watchers: dict[int, set[int]] = collections.defaultdict(set)

    def __len__(self) -> int:
        return len(self._subs)

    # --- membership --------------------------------------------------------
    def add(
        self,
        conn_id: int,
        role: Role,
        principal_id: int,
        send: Callable[[Frame], None],
        close: Callable[[int, str], None],
    ) -> None:
        """Register an authenticated socket (runs once, right after auth)."""
        self._subs[conn_id] = Subscriber(conn_id, role, principal_id, send, close)
        if role is Role.ADMIN:
            self._admins.add(conn_id)
            self._by_admin[principal_id].add(conn_id)
        else:
            self._by_store[principal_id].add(conn_id)

    def remove(self, conn_id: int) -> None:
        """Forget a socket (runs when it closes, for whatever reason)."""
        sub = self._subs.pop(conn_id, None)
        if sub is None:
            return
        self._admins.discard(conn_id)
        index = self._by_admin if sub.role is Role.ADMIN else self._by_store
        _discard(index, sub.principal_id, conn_id)
        for session_id in sub.watching or ():
            _discard(self._watchers, session_id, conn_id)

    def close_all(self, code: int, reason: str) -> None:
        """Close every socket (graceful shutdown: clients resume elsewhere)."""
        for sub in list(self._subs.values()):
            sub.close(code, reason)

    def close_principal(self, role: Role, principal_id: int, code: int, reason: str) -> int:
        """Close every socket of one account (its key was rotated or revoked);
        return how many."""
        index = self._by_admin if role is Role.ADMIN else self._by_store
        subs = [self._subs[i] for i in index.get(principal_id, ()) if i in self._subs]
        for sub in subs:
            sub.close(code, reason)
        return len(subs)

    # --- resume --------------------------------------------------------------
    def begin_replay(self, conn_id: int, session_id: int, after_seq: int) -> None:
        """From now on hold live messages of the session back for this socket."""
        sub = self._subs[conn_id]
        sub.last_seq[session_id] = after_seq
        if sub.replaying is None:
            sub.replaying = {}
        sub.replaying[session_id] = []
        if sub.watching is None:
            sub.watching = set()
        sub.watching.add(session_id)
        self._watchers[session_id].add(conn_id)

    def send_replayed(self, conn_id: int, message: Message) -> None:
        """Send one stored message during a replay (skipped if already sent)."""
        sub = self._subs.get(conn_id)
        if sub is not None:
            _send_if_new(sub, message.session_id, message.seq, Frame("message", message=message))

    def end_replay(self, conn_id: int, session_id: int) -> int:
        """Flush the held-back live messages; return the last seq sent."""
        sub = self._subs.get(conn_id)
        if sub is None:
            return 0
        held = sub.replaying.pop(session_id, []) if sub.replaying else []
        for seq, frame in held:
            _send_if_new(sub, session_id, seq, frame)
        return sub.last_seq.get(session_id, 0)

    # --- a socket's own messages -------------------------------------------
    def begin_post(self, conn_id: int) -> None:
        """A socket's message is about to be stored: hold its frames back."""
        sub = self._subs.get(conn_id)
        if sub is not None:
            sub.posting += 1

    def end_post(self, conn_id: int, message: Message | None) -> None:
        """The socket's message was stored (or refused): release the frames
        held before its copy, and drop the copy (the ack carries it); once no
        message of the socket is being stored, release the rest. Runs before
        the ack is sent, so the released frames (earlier seqs) come first."""
        sub = self._subs.get(conn_id)
        if sub is None or not sub.posting:
            return
        sub.posting -= 1
        held = sub.held
        copy_at = None
        if message is not None:
            copy_at = next(
                (
                    i
                    for i, frame in enumerate(held)
                    if frame.type == "message" and frame.fields["message"].id == message.id
                ),
                None,
            )
            if copy_at is None:  # its copy comes later (from the feed): skip it then
                if sub.acked is None:
                    sub.acked = collections.deque(maxlen=ACKED_KEPT)
                sub.acked.append(message.id)
        if copy_at is not None:
            release, sub.held = held[:copy_at], held[copy_at + 1 :]
        else:
            release, sub.held = [], held
        if not sub.posting:
            release, sub.held = release + sub.held, []
        for frame in release:
            sub.send(frame)

    # --- fan-out -------------------------------------------------------------
    def publish(self, event: Event) -> None:
        """Deliver one stored event to its audience (in commit order: from the
        feed, or straight from this process's commit)."""
        kind, payload = event.kind, event.payload
        doc = payload.get("session")
        session = session_from_doc(doc) if doc is not None else None
        if kind == "message":
            message = _message_from_doc(payload["message"])
            frame = Frame("message", message=message)
            session_id, seq = message.session_id, message.seq
            for sub in self._message_audience(event, session):
                if sub.acked and message.id in sub.acked:
                    sub.acked.remove(message.id)  # its ack carried it already
                    sub.last_seq[session_id] = max(seq, sub.last_seq.get(session_id, 0))
                    continue
                self._send_in_order(sub, session_id, seq, frame)
        elif kind == "typing":
            frame = Frame("typing", session_id=event.session_id, sender=payload["sender"])
            other_side = (
                self._by_admin.get(event.admin_id, ())
                if payload["sender"] == "store"
                else self._by_store.get(event.store_id, ())
            )
            self._send_all(other_side, frame)
        elif kind in ("session_opened", "session_claimed", "session_released"):
            # A claim names its winner, so a console that lost the race can say who.
            extra = {"admin": payload["admin"]} if kind == "session_claimed" else {}
            if "reason" in payload:  # a stale claim's requeue: the console says why
                extra["reason"] = payload["reason"]
            self._send_all(self._admins, Frame(kind, session=session, **extra))
            if kind == "session_claimed":
                self._send_all(
                    self._by_store.get(event.store_id, ()),
                    Frame("admin_connected", session_id=event.session_id, admin=payload["admin"]),
                )
        elif kind == "session_closed":
            frame = Frame(kind, session=session)
            self._send_all(self._admins | self._by_store.get(event.store_id, set()), frame)

    def _message_audience(self, event: Event, session: Any) -> Iterable[Subscriber]:
        stores = self._by_store.get(event.store_id, ())
        admins = self._by_admin.get(event.admin_id, ())
        watchers = self._watchers.get(event.session_id)
        subs = self._subs
        if not watchers:  # the usual case: the store's and the holder's sockets
            return [subs[i] for i in (*stores, *admins) if i in subs]
        ids = set(stores)
        ids.update(admins)
        holder = session.admin_id if session else event.admin_id
        for conn_id in watchers:
            sub = self._subs.get(conn_id)
            # A watching admin keeps getting messages only while it may read them.
            if sub and (sub.role is Role.STORE or holder is None or holder == sub.principal_id):
                ids.add(conn_id)
        return [self._subs[i] for i in ids if i in self._subs]

    def _send_all(self, conn_ids: Iterable[int], frame: Frame) -> None:
        for conn_id in list(conn_ids):
            sub = self._subs.get(conn_id)
            if sub is not None:
                sub.deliver(frame)

    @staticmethod
    def _send_in_order(sub: Subscriber, session_id: int, seq: int, frame: Frame) -> None:
        held = sub.replaying.get(session_id) if sub.replaying else None
        if held is not None:
            held.append((seq, frame))  # sent by end_replay, after the stored ones
        else:
            _send_if_new(sub, session_id, seq, frame)

    # --- the support workflow (issue 12): audiences by principal -----------------
    def send_to_admin(self, admin_id: int | None, frame: Frame) -> None:
        """Every socket of one admin."""
        self._send_all(self._by_admin.get(admin_id, ()), frame)

    def send_to_store(self, store_id: int, frame: Frame) -> None:
        """Send ``frame`` to every socket of the store."""
        self._send_all(self._by_store.get(store_id, ()), frame)

    def send_to_admins(self, frame: Frame) -> None:
        """Send ``frame`` to every admin socket of this process."""
        self._send_all(self._admins, frame)

    def stop_watching(self, admin_id: int | None, session_id: int) -> None:
        """An admin lost a session (a transfer): its sockets stop following it."""
        for conn_id in list(self._by_admin.get(admin_id, ())):
            sub = self._subs.get(conn_id)
            if sub is not None:
                if sub.watching:
                    sub.watching.discard(session_id)
                if sub.replaying:
                    sub.replaying.pop(session_id, None)
            _discard(self._watchers, session_id, conn_id)


def _send_if_new(sub: Subscriber, session_id: int, seq: int, frame: Frame) -> None:
    if seq > sub.last_seq.get(session_id, 0):
        sub.last_seq[session_id] = seq
        sub.deliver(frame)


def _message_from_doc(doc: dict[str, Any]) -> Message:
    # Positional: a frozen record built per delivered message, so it matters.
    return Message(
        doc["id"],
        doc["session_id"],
        doc["seq"],
        doc["sender"],
        doc["sender_id"],
        doc["body"],
        doc.get("client_id"),
        doc["created"],
        doc.get("event"),
    )


def _discard(index: dict[Any, set[int]], key: int | None, conn_id: int) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(conn_id)
        if not members:
            del index[key]
