"""The SQLite backend's webhook delivery state: the outbox (filled by a trigger
in the same transaction as each change), each hook's cursor, and the lease
that lets one process deliver."""

from __future__ import annotations

import json
import sqlite3
import time

from storage import sqlite_schema as schema
from storage.documents import message_to_doc, session_to_doc
from storage.workflow import OutboxEntry


def set_outbox_trigger(conn: sqlite3.Connection, kinds: tuple[str, ...]) -> None:
    """Copy events of ``kinds`` into the outbox from now on; none: stop."""
    conn.execute("DROP TRIGGER IF EXISTS events_to_webhook_outbox")
    if kinds:
        quoted = ", ".join("'" + k.replace("'", "''") + "'" for k in kinds)
        # An events table whose message events name their message row instead
        # of carrying it: keep the reference, read_outbox fills it in.
        columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
        message_id = "NEW.message_id" if "message_id" in columns else "NULL"
        conn.execute(schema.WEBHOOK_TRIGGER.format(kinds=quoted, message_id=message_id))
    else:
        conn.execute("DELETE FROM webhook_outbox")


def read_outbox(conn: sqlite3.Connection, after_id: int, limit: int) -> list[OutboxEntry]:
    """Outbox entries after ``after_id``, in id (commit) order."""
    entries = []
    for r in conn.execute(
        "SELECT * FROM webhook_outbox WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
    ).fetchall():
        payload = json.loads(r["payload"] or "{}")
        if r["message_id"] is not None and "message" not in payload:
            row = conn.execute("SELECT * FROM messages WHERE id = ?", (r["message_id"],)).fetchone()
            if row is not None:
                payload["message"] = message_to_doc(schema.row_to_message(row))
        if "session" not in payload:  # the session as it is now, for its identity
            session = schema.fetch_session(conn, r["session_id"])
            if session is not None:
                payload["session"] = session_to_doc(session)
        entries.append(OutboxEntry(r["id"], r["kind"], r["session_id"], payload, r["created"]))
    return entries


def take_lease_write(
    conn: sqlite3.Connection, name: str, holder: str, duration_secs: float
) -> bool:
    """Take or renew the lease ``name`` for ``holder`` in one guarded upsert; whether ``holder``
    has it now."""
    now = time.time()
    conn.execute(
        "INSERT INTO leases (name, holder, expires) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires"
        " WHERE leases.holder = excluded.holder OR leases.expires < ?",
        (name, holder, now + duration_secs, now),
    )
    row = conn.execute("SELECT holder FROM leases WHERE name = ?", (name,)).fetchone()
    return bool(row[0] == holder)


def advance_cursor_write(conn: sqlite3.Connection, hook: str, last_id: int) -> None:
    """Move ``hook``'s cursor to ``last_id``, never backwards."""
    conn.execute(
        "INSERT INTO webhook_cursors (hook, last_id) VALUES (?, ?)"
        " ON CONFLICT (hook) DO UPDATE SET last_id = MAX(last_id, excluded.last_id)",
        (hook, last_id),
    )


def prune_outbox_write(conn: sqlite3.Connection, hooks: tuple[str, ...]) -> int:
    """Drop entries every configured hook has delivered."""
    if not hooks:
        return 0
    marks = ",".join("?" * len(hooks))
    row = conn.execute(
        f"SELECT COUNT(*), MIN(last_id) FROM webhook_cursors WHERE hook IN ({marks})", hooks
    ).fetchone()
    if row[0] < len(hooks):
        return 0  # a hook that never delivered still needs everything
    return conn.execute("DELETE FROM webhook_outbox WHERE id <= ?", (row[1],)).rowcount
