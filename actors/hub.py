"""The hub: this process's WebSocket connections, and the fan-out of events.

The hub never touches the network itself. A connection registers a ``send``
callable that must not block (the WebSocket handler queues the frame and cuts
the client off if its buffer grows past the bound), so one slow client can
never hold up the feed, the actors, or other clients.

Connections are known by id only; every index here holds ids, and a delivery to
an id that has gone is skipped.

Ordering: ``publish`` is called in the feed's commit order. For each socket and
session the hub remembers the last ``seq`` sent and drops anything at or below
it, and while the socket is replaying history (``resume``) it holds live
messages back; together these give "each ``seq`` exactly once, in order".
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from storage.base import Event, Message, Role, message_from_doc, session_from_doc


class Frame:
    """One outgoing event; its encodings are cached, so a frame sent to a
    thousand sockets is rendered and encoded once per subprotocol."""

    __slots__ = ("type", "fields", "encoded")

    def __init__(self, type: str, **fields: Any):
        self.type = type
        self.fields = fields
        self.encoded: dict[str, Any] = {}


@dataclass(eq=False)
class Subscriber:
    """The hub's view of one socket."""

    conn_id: int
    role: Role
    principal_id: int
    send: Callable[[Frame], None]
    close: Callable[[int, str], None]
    last_seq: dict[int, int] = field(default_factory=dict)
    replaying: dict[int, list[tuple[int, Frame]]] = field(default_factory=dict)
    watching: set[int] = field(default_factory=set)


class Hub:
    def __init__(self) -> None:
        self._subs: dict[int, Subscriber] = {}
        self._admins: set[int] = set()
        self._by_store: dict[int, set[int]] = collections.defaultdict(set)
        self._by_admin: dict[int, set[int]] = collections.defaultdict(set)
        self._watchers: dict[int, set[int]] = collections.defaultdict(set)

    def __len__(self) -> int:
        return len(self._subs)

    # --- membership --------------------------------------------------------
    def add(self, conn_id: int, role: Role, principal_id: int,
            send: Callable[[Frame], None], close: Callable[[int, str], None]) -> None:
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
        for session_id in sub.watching:
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
        sub.replaying[session_id] = []
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
        for seq, frame in sub.replaying.pop(session_id, []):
            _send_if_new(sub, session_id, seq, frame)
        return sub.last_seq.get(session_id, 0)

    # --- fan-out -------------------------------------------------------------
    def publish(self, event: Event) -> None:
        """Deliver one stored event to its audience (the feed calls this in order)."""
        kind, payload = event.kind, event.payload
        session = session_from_doc(payload["session"]) if "session" in payload else None
        if kind == "message":
            message = message_from_doc(payload["message"])
            frame = Frame("message", message=message)
            for sub in self._message_audience(event, session):
                self._send_in_order(sub, message.session_id, message.seq, frame)
        elif kind == "typing":
            frame = Frame("typing", session_id=event.session_id, sender=payload["sender"])
            other_side = (self._by_admin.get(event.admin_id, ()) if payload["sender"] == "store"
                          else self._by_store.get(event.store_id, ()))
            self._send_all(other_side, frame)
        elif kind in ("session_opened", "session_claimed", "session_released"):
            # A claim names its winner, so a console that lost the race can say who.
            extra = {"admin": payload["admin"]} if kind == "session_claimed" else {}
            self._send_all(self._admins, Frame(kind, session=session, **extra))
            if kind == "session_claimed":
                self._send_all(self._by_store.get(event.store_id, ()),
                               Frame("admin_connected", session_id=event.session_id,
                                     admin=payload["admin"]))
        elif kind == "session_closed":
            frame = Frame(kind, session=session)
            self._send_all(self._admins | self._by_store.get(event.store_id, set()), frame)

    def _message_audience(self, event: Event, session: Any) -> Iterable[Subscriber]:
        ids = set(self._by_store.get(event.store_id, ()))
        ids.update(self._by_admin.get(event.admin_id, ()))
        holder = session.admin_id if session else event.admin_id
        for conn_id in self._watchers.get(event.session_id, ()):
            sub = self._subs.get(conn_id)
            # A watching admin keeps getting messages only while it may read them.
            if sub and (sub.role is Role.STORE or holder is None
                        or holder == sub.principal_id):
                ids.add(conn_id)
        return [self._subs[i] for i in ids if i in self._subs]

    def _send_all(self, conn_ids: Iterable[int], frame: Frame) -> None:
        for conn_id in list(conn_ids):
            sub = self._subs.get(conn_id)
            if sub is not None:
                sub.send(frame)

    @staticmethod
    def _send_in_order(sub: Subscriber, session_id: int, seq: int, frame: Frame) -> None:
        held = sub.replaying.get(session_id)
        if held is not None:
            held.append((seq, frame))  # sent by end_replay, after the stored ones
        else:
            _send_if_new(sub, session_id, seq, frame)


def _send_if_new(sub: Subscriber, session_id: int, seq: int, frame: Frame) -> None:
    if seq > sub.last_seq.get(session_id, 0):
        sub.last_seq[session_id] = seq
        sub.send(frame)


def _discard(index: dict[int, set[int]], key: int | None, conn_id: int) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(conn_id)
        if not members:
            del index[key]
