"""The SQLite backend's sessions: reads, and the guarded claim, release and
close, batched so a claim storm costs one read and one UPDATE."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar

from storage import sqlite_schema as schema
from storage.documents import session_to_doc
from storage.outcomes import (
    ClaimOutcome,
    ClaimResult,
    SessionWrite,
    WriteOutcome,
    holder_refusal,
    why_claim_failed,
)
from storage.records import (
    Admin,
    Session,
    SessionStatus,
    utc_now_iso,
)
from storage.sqlite_connection import SQLiteConnection

# What one session write gives back (a ClaimResult, a SessionWrite).
T = TypeVar("T")


class SQLiteSessions(SQLiteConnection):
    """Sessions on SQLite (``ChatStorage``'s session methods)."""

    async def _session_write(self, fn: Callable[[sqlite3.Connection, KnownSessions], T]) -> T:
        """A claim, release or close. Those queued together share one savepoint
        and reach the database in the order they were submitted (the session
        actor overlaps them on that promise), and read each session once
        (``KnownSessions``): ten admins racing for a session cost one read and
        one guarded UPDATE, the nine losers decided from the winner's row."""
        return await self._write_batched(_in_order, fn)

    # --- sessions -------------------------------------------------------
    async def get_session(self, session_id: int) -> Session | None:
        """``ChatStorage.get_session``: one point read."""
        return await self._read(lambda c: schema.fetch_session(c, session_id))

    async def get_active_session(self, store_id: int) -> Session | None:
        """``ChatStorage.get_active_session``: the store's open or claimed session, if any."""
        return await self._read(
            lambda c: schema.fetch_session_where(
                c, "s.store_id = ? AND s.status != 'closed'", (store_id,)
            )
        )

    async def list_open_sessions(self, limit: int, after: tuple[str, int] | None) -> list[Session]:
        """``ChatStorage.list_open_sessions``: the queue in ``(queued_at, id)`` order, after the
        cursor."""
        where, args = "s.status = 'open'", []
        if after:
            where += " AND (s.queued_at, s.id) > (?, ?)"
            args += list(after)
        return await self._read(
            lambda c: schema.fetch_sessions(c, where, args, "s.queued_at, s.id", limit)
        )

    async def list_admin_sessions(
        self, admin_id: int, limit: int, before: tuple[str, int] | None
    ) -> list[Session]:
        """``ChatStorage.list_admin_sessions``: latest activity first, before the cursor."""
        where, args = "s.status = 'claimed' AND s.admin_id = ?", list[object]([admin_id])
        if before:
            where += " AND (s.activity_at, s.id) < (?, ?)"
            args += list(before)
        return await self._read(
            lambda c: schema.fetch_sessions(c, where, args, "s.activity_at DESC, s.id DESC", limit)
        )

    async def list_store_sessions(
        self, store_id: int, limit: int, before: tuple[str, int] | None
    ) -> list[Session]:
        """``ChatStorage.list_store_sessions``: newest first, before the cursor."""
        where, args = "s.store_id = ?", list[object]([store_id])
        if before:
            where += " AND (s.created, s.id) < (?, ?)"
            args += list(before)
        return await self._read(
            lambda c: schema.fetch_sessions(c, where, args, "s.created DESC, s.id DESC", limit)
        )

    async def count_open_sessions(self) -> int:
        """``ChatStorage.count_open_sessions``: one COUNT."""
        return await self._read(
            lambda c: c.execute("SELECT COUNT(*) FROM sessions WHERE status = 'open'").fetchone()[0]
        )

    async def claim_session(self, session_id: int, admin: Admin, max_sessions: int) -> ClaimResult:
        """``ChatStorage.claim_session``: one guarded UPDATE (the limit checked in it), batched
        with the other session writes of the group."""

        def write(conn: sqlite3.Connection, known: KnownSessions) -> ClaimResult:
            # This runs inside the writer's BEGIN IMMEDIATE, so nothing can
            # change the row between this read and the decision: a session
            # already claimed or closed is refused from the read alone, with
            # no UPDATE (nine of ten claims in a storm are such losers).
            current = known.read(conn, session_id)
            if current is None or current.status is not SessionStatus.OPEN:
                return ClaimResult(why_claim_failed(current, admin.id), current)
            now = utc_now_iso()
            # The guard: one conditional UPDATE; the limit is a sub-select of
            # the same statement, so check and claim cannot be separated.
            cur = conn.execute(
                "UPDATE sessions SET status = 'claimed', admin_id = ?, updated = ?,"
                " activity_at = ? WHERE id = ? AND status = 'open' AND admin_id IS NULL"
                " AND (? = 0 OR (SELECT COUNT(*) FROM sessions WHERE admin_id = ?"
                "                AND status = 'claimed') < ?)",
                (admin.id, now, now, session_id, max_sessions, admin.id, max_sessions),
            )
            if cur.rowcount != 1:
                return ClaimResult(why_claim_failed(current, admin.id, limit_hit=True), current)
            # The row as the UPDATE left it, without reading it again.
            session = dataclasses.replace(
                current,
                status=SessionStatus.CLAIMED,
                admin_id=admin.id,
                updated=now,
                activity_at=now,
            )
            payload = {
                "session": session_to_doc(session),
                "admin": {"id": admin.id, "name": admin.name},
            }
            schema.insert_event(conn, "session_claimed", session, admin.id, payload)
            _, session = schema.insert_message(
                conn,
                session,
                "system",
                None,
                f"{admin.name} joined the chat",
                None,
                event="admin_connected",
                audience_admin=admin.id,
            )
            known.wrote(session)
            return ClaimResult(ClaimOutcome.WON, session)

        return await self._session_write(write)

    async def release_session(self, session_id: int, admin_id: int) -> SessionWrite:
        """``ChatStorage.release_session``: checked against the holder and written in one batched
        write."""

        def write(conn: sqlite3.Connection, known: KnownSessions) -> SessionWrite:
            failed = holder_refusal(known.read(conn, session_id), admin_id)
            if failed:
                return failed
            now = utc_now_iso()
            conn.execute(
                "UPDATE sessions SET status = 'open', admin_id = NULL, updated = ?,"
                " queued_at = ?, activity_at = ? WHERE id = ?",
                (now, now, now, session_id),
            )
            return _announce_hand_back(
                conn,
                known,
                session_id,
                admin_id,
                "The session went back to the queue",
                "session_released",
            )

        return await self._session_write(write)

    async def close_session(self, session_id: int, admin_id: int) -> SessionWrite:
        """``ChatStorage.close_session``: checked against the holder and written in one batched
        write."""

        def write(conn: sqlite3.Connection, known: KnownSessions) -> SessionWrite:
            failed = holder_refusal(known.read(conn, session_id), admin_id, closed_ok=True)
            if failed:
                return failed
            now = utc_now_iso()
            conn.execute(
                "UPDATE sessions SET status = 'closed', updated = ?, activity_at = ? WHERE id = ?",
                (now, now, session_id),
            )
            return _announce_hand_back(
                conn, known, session_id, admin_id, "The session was closed", "session_closed"
            )

        return await self._session_write(write)


class KnownSessions:
    """The session rows one batch of session writes has read or written.

    The writes of one ``_in_order`` call run back to back inside one
    ``BEGIN IMMEDIATE`` transaction: no other process can write (SQLite's
    write lock) and nothing else of ours runs between them. So a row read or
    written by one of them is still the committed-to-be state for the next,
    and a claim queued behind another claim of the same session is decided
    from that row with no statement. Every write that changes a session row
    must report it here (``wrote``)."""

    def __init__(self) -> None:
        self._rows: dict[int, Session | None] = {}

    def read(self, conn: sqlite3.Connection, session_id: int) -> Session | None:
        """The session as it stands now in this transaction."""
        if session_id not in self._rows:
            self._rows[session_id] = schema.fetch_session(conn, session_id)
        return self._rows[session_id]

    def wrote(self, session: Session) -> None:
        """Runs after a write changed a session: this is its row now."""
        self._rows[session.id] = session


def _in_order(
    conn: sqlite3.Connection, writes: Sequence[Callable[[sqlite3.Connection, KnownSessions], T]]
) -> list[T]:
    """The batch handler of ``_session_write``: each write, in order, sharing
    what they read (``KnownSessions``). If one raises, the group-commit writer
    rolls the group back and runs them again one by one, each alone (and each
    with nothing known)."""
    known = KnownSessions()
    return [write(conn, known) for write in writes]


def _announce_hand_back(
    conn: sqlite3.Connection,
    known: KnownSessions,
    session_id: int,
    admin_id: int,
    body: str,
    kind: str,
) -> SessionWrite:
    """After a release's or a close's UPDATE, in the same write: the system
    message the store sees and the event every holder's socket gets."""
    session = schema.fetch_written_session(conn, session_id)
    _, session = schema.insert_message(
        conn, session, "system", None, body, None, event=kind, audience_admin=admin_id
    )
    schema.insert_event(conn, kind, session, admin_id, {"session": session_to_doc(session)})
    known.wrote(session)
    return SessionWrite(WriteOutcome.DONE, session)
