"""The support workflow's writes and reads on SQLite (``SQLiteStorage`` calls these).

Each ``*_write`` function runs inside the group-commit writer's ``BEGIN
IMMEDIATE`` transaction, which holds SQLite's write lock for every process
sharing the file: what a function reads and the guarded UPDATE it then makes
are one atomic step across processes. The UPDATEs still carry their guards in
their WHERE clauses, so each decision reads as one conditional write.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any, NamedTuple

from storage import sqlite_schema as schema
from storage.documents import session_to_doc
from storage.outcomes import SessionWrite, WriteOutcome
from storage.records import Admin, utc_now_iso
from storage.workflow import (
    REQUEUE_BODIES,
    AdminPresence,
    ReadResult,
    RequeueReason,
    StaleClaim,
    StaleCutoffs,
    TransferOutcome,
    TransferResult,
    effective_presence,
    iso_from_epoch,
    may_mark_read,
    transfer_payload,
    why_transfer_refused,
)

# Presence rows of nodes gone this long are dropped (their last-seen time with them).
PRESENCE_ROW_RETENTION_SECS = 7 * 24 * 3600.0


def fetch_admin(conn: sqlite3.Connection, admin_id: int) -> Admin | None:
    """The admin with this id, or None."""
    row = conn.execute("SELECT id, name, email FROM admins WHERE id = ?", (admin_id,)).fetchone()
    return Admin(row["id"], row["name"], row["email"]) if row else None


# --- transfer -------------------------------------------------------------------
def transfer_write(
    conn: sqlite3.Connection, session_id: int, caller_id: int, target_id: int, max_sessions: int
) -> TransferResult:
    """The transfer, inside the writer's transaction: refused from one read of the session and
    the target, else the session handed over with its system message and event."""
    session = schema.fetch_session(conn, session_id)
    target = fetch_admin(conn, target_id)
    refused = why_transfer_refused(session, caller_id, target)
    if refused is not None or target is None:  # (no refusal means a target)
        return TransferResult(refused or TransferOutcome.ADMIN_NOT_FOUND, session)
    now = utc_now_iso()
    # The guard: still the caller's claimed session, and the target under its
    # limit, counted in the same statement.
    cur = conn.execute(
        "UPDATE sessions SET admin_id = ?, updated = ?, activity_at = ?"
        " WHERE id = ? AND status = 'claimed' AND admin_id = ?"
        " AND (? = 0 OR (SELECT COUNT(*) FROM sessions WHERE admin_id = ?"
        "                AND status = 'claimed') < ?)",
        (target_id, now, now, session_id, caller_id, max_sessions, target_id, max_sessions),
    )
    if cur.rowcount != 1:
        return TransferResult(TransferOutcome.LIMIT, session)
    caller = fetch_admin(conn, caller_id)
    if caller is None:  # it holds the session, in this transaction
        raise sqlite3.DatabaseError(f"admin {caller_id} is gone inside its own write")
    session = schema.fetch_written_session(conn, session_id)
    schema.insert_event(
        conn, "session_transferred", session, target_id, transfer_payload(session, caller, target)
    )
    _, session = schema.insert_message(
        conn,
        session,
        "system",
        None,
        f"{caller.name} transferred the chat to {target.name}",
        None,
        event="session_transferred",
        audience_admin=target_id,
    )
    return TransferResult(TransferOutcome.DONE, session)


# --- read state -----------------------------------------------------------------
def mark_read_write(
    conn: sqlite3.Connection, session_id: int, side: str, reader_id: int, seq: int
) -> ReadResult:
    """The read mark, inside the writer's transaction: capped at the last seq, only ever raised,
    with a ``read`` event when it rises."""
    session = schema.fetch_session(conn, session_id)
    if session is None:
        return ReadResult(WriteOutcome.NOT_FOUND)
    if not may_mark_read(session, side, reader_id):
        return ReadResult(WriteOutcome.FORBIDDEN, session=session)
    seq = min(seq, session.last_seq)  # nobody reads past the last message
    # Only forward: the upsert changes nothing unless the new seq is higher.
    moved = (
        conn.execute(
            "INSERT INTO session_reads (session_id, side, seq) VALUES (?, ?, ?)"
            " ON CONFLICT (session_id, side) DO UPDATE SET seq = excluded.seq"
            " WHERE excluded.seq > session_reads.seq",
            (session_id, side, seq),
        ).rowcount
        == 1
    )
    stored = conn.execute(
        "SELECT seq FROM session_reads WHERE session_id = ? AND side = ?", (session_id, side)
    ).fetchone()[0]
    if moved:
        schema.insert_event(
            conn,
            "read",
            session,
            session.admin_id,
            {"session_id": session_id, "sender": side, "seq": stored},
        )
    return ReadResult(WriteOutcome.DONE, stored, moved, session)


def unread_counts(conn: sqlite3.Connection, session_ids: list[int], side: str) -> dict[int, int]:
    """Messages of the other side past this side's read position, per session."""
    if not session_ids:
        return {}
    other = "store" if side == "admin" else "admin"
    marks = ",".join("?" * len(session_ids))
    rows = conn.execute(
        f"SELECT s.id, (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id"
        f"   AND m.sender = ? AND m.seq > COALESCE((SELECT r.seq FROM session_reads r"
        f"     WHERE r.session_id = s.id AND r.side = ?), 0)) AS unread"
        f" FROM sessions s WHERE s.id IN ({marks})",
        (other, side, *session_ids),
    )
    return {row[0]: row[1] for row in rows}


def read_positions(conn: sqlite3.Connection, session_id: int) -> dict[str, int]:
    """How far each side of the session has read (``{"store": seq, "admin": seq}``)."""
    rows = conn.execute("SELECT side, seq FROM session_reads WHERE session_id = ?", (session_id,))
    return {row[0]: row[1] for row in rows}


# --- presence -------------------------------------------------------------------
_LIVE = (
    "EXISTS (SELECT 1 FROM admin_presence p WHERE p.admin_id = {admin}"
    " AND p.sockets > 0 AND p.seen >= ?)"
)


def announce(conn: sqlite3.Connection, admin_id: int, live_after: float) -> str | None:
    """If the admin's effective presence differs from the one last announced,
    record and announce it (a ``presence`` event); return it, else None."""
    live = conn.execute(f"SELECT {_LIVE.format(admin='?')}", (admin_id, live_after)).fetchone()[0]
    row = conn.execute(
        "SELECT away, announced FROM admin_status WHERE admin_id = ?", (admin_id,)
    ).fetchone()
    away, announced = (row[0], row[1]) if row else (0, "offline")
    status = effective_presence(bool(live), bool(away))
    if status == announced:
        return None
    conn.execute(
        "INSERT INTO admin_status (admin_id, announced) VALUES (?, ?)"
        " ON CONFLICT (admin_id) DO UPDATE SET announced = excluded.announced",
        (admin_id, status),
    )
    insert_admin_event(conn, "presence", admin_id, {"admin_id": admin_id, "status": status})
    return status


class _NoSession(NamedTuple):
    """Where a feed event needs a session but is about an admin: ids 0."""

    id: int = 0
    store_id: int = 0


def insert_admin_event(
    conn: sqlite3.Connection, kind: str, admin_id: int, payload: dict[str, Any]
) -> None:
    """A feed event about an admin, not a session. Through ``insert_event``
    like every other event, so it takes the same way to the sockets."""
    schema.insert_event(conn, kind, _NoSession(), admin_id, payload)  # type: ignore[arg-type]


def set_sockets_write(
    conn: sqlite3.Connection, node: str, admin_id: int, sockets: int, live_after: float
) -> str | None:
    """Record ``admin_id``'s open sockets on ``node`` (a heartbeat of that row); announce a
    change of presence."""
    conn.execute(
        "INSERT INTO admin_presence (node, admin_id, sockets, seen) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (node, admin_id) DO UPDATE SET sockets = excluded.sockets,"
        " seen = excluded.seen",
        (node, admin_id, sockets, time.time()),
    )
    return announce(conn, admin_id, live_after)


def set_away_write(
    conn: sqlite3.Connection, admin_id: int, away: bool, live_after: float
) -> str | None:
    """Record whether the admin says it is away; announce a change of presence."""
    conn.execute(
        "INSERT INTO admin_status (admin_id, away) VALUES (?, ?)"
        " ON CONFLICT (admin_id) DO UPDATE SET away = excluded.away",
        (admin_id, int(away)),
    )
    return announce(conn, admin_id, live_after)


def heartbeat_write(
    conn: sqlite3.Connection, node: str, sockets: dict[int, int], live_after: float
) -> list[tuple[int, str]]:
    """Rewrite this node's rows from its ``sockets`` counts (so a row another
    process retired while this one was slow comes back), retire dead nodes'
    sockets, and announce every admin whose presence changed."""
    now = time.time()
    conn.execute(
        "UPDATE admin_presence SET sockets = 0, seen = ? WHERE node = ? AND sockets > 0",
        (now, node),
    )
    conn.executemany(
        "INSERT INTO admin_presence (node, admin_id, sockets, seen) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (node, admin_id) DO UPDATE SET sockets = excluded.sockets,"
        " seen = excluded.seen",
        [(node, admin_id, count, now) for admin_id, count in sockets.items() if count > 0],
    )
    # A row that stopped being refreshed is a dead process: its sockets are
    # gone; its `seen` stays as the admin's last-seen time.
    conn.execute(
        "UPDATE admin_presence SET sockets = 0 WHERE sockets > 0 AND seen < ?", (live_after,)
    )
    conn.execute(
        "DELETE FROM admin_presence WHERE sockets = 0 AND seen < ?",
        (now - PRESENCE_ROW_RETENTION_SECS,),
    )
    stale = conn.execute(
        f"SELECT a.admin_id FROM admin_status a WHERE a.announced !="
        f" CASE WHEN NOT {_LIVE.format(admin='a.admin_id')} THEN 'offline'"
        f" WHEN a.away THEN 'away' ELSE 'online' END",
        (live_after,),
    ).fetchall()
    changes = []
    for (admin_id,) in stale:
        status = announce(conn, admin_id, live_after)
        if status is not None:
            changes.append((admin_id, status))
    return changes


def list_admins_with_presence(
    conn: sqlite3.Connection, limit: int, after_id: int, live_after: float
) -> list[AdminPresence]:
    """One page of admins by id after ``after_id``, each with presence and its claimed sessions."""
    rows = conn.execute(
        f"SELECT a.id, a.name, a.email, {_LIVE.format(admin='a.id')} AS live,"
        " COALESCE(st.away, 0) AS away,"
        " (SELECT COUNT(*) FROM sessions s WHERE s.admin_id = a.id"
        "  AND s.status = 'claimed') AS active"
        " FROM admins a LEFT JOIN admin_status st ON st.admin_id = a.id"
        " WHERE a.id > ? ORDER BY a.id LIMIT ?",
        (live_after, after_id, limit),
    )
    return [
        AdminPresence(
            Admin(r["id"], r["name"], r["email"]),
            effective_presence(bool(r["live"]), bool(r["away"])),
            r["active"],
        )
        for r in rows
    ]


# --- stale claims back to the queue -------------------------------------------------
# The holder is offline (no live row) and was last seen before the cutoff.
_HOLDER_OFFLINE = (
    f"NOT {_LIVE.format(admin='s.admin_id')} AND COALESCE((SELECT MAX(p.seen)"
    " FROM admin_presence p WHERE p.admin_id = s.admin_id), 0) < ?"
)
# ... and has not claimed, taken over or written in the session since the cutoff
# (the store writing on does not keep an absent admin's claim).
_HOLDER_QUIET = (
    "(SELECT MAX(m.created) FROM messages m WHERE m.session_id = s.id AND"
    " (m.sender = 'admin' OR m.event IN ('admin_connected', 'session_transferred')))"
    " < ?"
)
# The last store-or-admin message is the store's: it waits for a reply.
_AWAITS_REPLY = (
    "(SELECT m.sender FROM messages m WHERE m.session_id = s.id"
    " AND m.sender != 'system' ORDER BY m.seq DESC LIMIT 1) = 'store'"
)


def find_stale_claims(
    conn: sqlite3.Connection, cutoffs: StaleCutoffs, limit: int
) -> list[StaleClaim]:
    """Claimed sessions stale by ``cutoffs`` (holder offline, or unanswered too long), at most
    ``limit``."""
    found: dict[int, StaleClaim] = {}
    if cutoffs.offline_before is not None:
        rows = conn.execute(
            f"SELECT s.id, s.admin_id, s.last_seq, s.updated FROM sessions s"
            f" WHERE s.status = 'claimed' AND {_HOLDER_OFFLINE} AND {_HOLDER_QUIET} LIMIT ?",
            (
                cutoffs.live_after,
                cutoffs.offline_before,
                iso_from_epoch(cutoffs.offline_before),
                limit,
            ),
        )
        for r in rows:
            found[r[0]] = StaleClaim(r[0], r[1], r[2], r[3], RequeueReason.OFFLINE)
    if cutoffs.unanswered_before is not None:
        rows = conn.execute(
            f"SELECT s.id, s.admin_id, s.last_seq, s.updated FROM sessions s"
            f" WHERE s.status = 'claimed' AND s.updated < ? AND {_AWAITS_REPLY} LIMIT ?",
            (iso_from_epoch(cutoffs.unanswered_before), limit),
        )
        for r in rows:
            found.setdefault(r[0], StaleClaim(r[0], r[1], r[2], r[3], RequeueReason.UNANSWERED))
    return list(found.values())


def requeue_write(
    conn: sqlite3.Connection, stale: StaleClaim, cutoffs: StaleCutoffs
) -> SessionWrite:
    """Put a stale claim back in the queue if nothing changed since it was
    judged stale: same holder, no message since (``last_seq``), no claim,
    transfer or reply since (``updated``), and for an offline holder, still
    offline (a reconnect wins). ``queued_at`` is kept: its original wait."""
    now = utc_now_iso()
    guard, args = "", []
    if stale.reason is RequeueReason.OFFLINE:
        if cutoffs.offline_before is None:
            return SessionWrite(WriteOutcome.UNCHANGED, None)
        guard = f" AND {_HOLDER_OFFLINE} AND {_HOLDER_QUIET}"
        args = [cutoffs.live_after, cutoffs.offline_before, iso_from_epoch(cutoffs.offline_before)]
    cur = conn.execute(
        "UPDATE sessions AS s SET status = 'open', admin_id = NULL, updated = ?, activity_at = ?"
        " WHERE s.id = ? AND s.status = 'claimed' AND s.admin_id = ? AND s.last_seq = ?"
        f" AND s.updated = ?{guard}",
        (now, now, stale.session_id, stale.admin_id, stale.last_seq, stale.updated, *args),
    )
    if cur.rowcount != 1:
        return SessionWrite(WriteOutcome.UNCHANGED, schema.fetch_session(conn, stale.session_id))
    session = schema.fetch_written_session(conn, stale.session_id)
    _, session = schema.insert_message(
        conn,
        session,
        "system",
        None,
        REQUEUE_BODIES[stale.reason],
        None,
        event="session_requeued",
        audience_admin=stale.admin_id,
    )
    schema.insert_event(
        conn,
        "session_released",
        session,
        stale.admin_id,
        {"session": session_to_doc(session), "reason": stale.reason.value},
    )
    return SessionWrite(WriteOutcome.DONE, session)
