"""SQLite tables and the row-level steps that ``sqlite.py`` composes into writes.

Every function here runs on a connection already inside a transaction (the
group-commit writer's ``BEGIN IMMEDIATE``, or a read), so each composed write is
atomic. The indexes are the database's own enforcement of the contract's rules.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from storage.documents import message_to_doc, session_to_doc
from storage.outcomes import PostResult, WriteOutcome
from storage.records import Event, Message, Session, SessionStatus, Store, utc_now_iso

# The page size a new database file is made with (``storage.sqlite_page_size``).
# SQLite's WAL logs whole pages, and a group of messages to many sessions
# touches about one page per message in the (session_id, seq) index alone
# (each session's newest entries sit on their own leaf). With 1 KiB pages the
# server writes half the bytes to disk per message that it does with SQLite's
# 4 KiB (2,962 vs 5,756 B, ``bench/ab.py``); CPU per message is the same within
# this machine's noise.
DEFAULT_PAGE_SIZE = 1024

DDL = """
CREATE TABLE IF NOT EXISTS admins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL, email TEXT,
    key_digest TEXT NOT NULL UNIQUE,      -- SHA-256 of the key; the key is never stored
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stores (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL, email TEXT, logo_url TEXT,
    key_digest TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    store_id INTEGER NOT NULL REFERENCES stores(id),
    admin_id INTEGER REFERENCES admins(id),
    status TEXT NOT NULL CHECK (status IN ('open', 'claimed', 'closed')),
    last_message_at TEXT,
    created TEXT NOT NULL, updated TEXT NOT NULL,
    queued_at TEXT NOT NULL, activity_at TEXT NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    first_store_message_at TEXT, first_admin_reply_at TEXT,
    CHECK ((status = 'open') = (admin_id IS NULL))
);
-- At most one open-or-claimed session per store, whoever tries to open a second.
CREATE UNIQUE INDEX IF NOT EXISTS sessions_one_active_per_store
    ON sessions (store_id) WHERE status != 'closed';
CREATE INDEX IF NOT EXISTS sessions_queue ON sessions (queued_at, id) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS sessions_by_admin
    ON sessions (admin_id, activity_at, id) WHERE status = 'claimed';
-- A store's sessions, newest first (the console's store panel).
CREATE INDEX IF NOT EXISTS sessions_by_store ON sessions (store_id, created, id);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL,
    sender TEXT NOT NULL CHECK (sender IN ('store', 'admin', 'system')),
    sender_id INTEGER, body TEXT NOT NULL, client_id TEXT, event TEXT,
    created TEXT NOT NULL,
    UNIQUE (session_id, seq)
);
-- Idempotency: a client_id names one message per sender, for ever.
CREATE UNIQUE INDEX IF NOT EXISTS messages_client_id
    ON messages (sender, sender_id, client_id) WHERE client_id IS NOT NULL;
-- The change feed other processes follow; rows are pruned after a while.
-- A message event names its row in messages (message_id) and has no payload of
-- its own; origin names the server process that wrote the event, so that one
-- can leave its own events out when it reads the feed.
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, session_id INTEGER NOT NULL,
    store_id INTEGER NOT NULL, admin_id INTEGER,
    payload TEXT NOT NULL, created REAL NOT NULL,
    message_id INTEGER, origin TEXT
);
-- Where each named node's feed reader got to, so a restart leaves no gap.
CREATE TABLE IF NOT EXISTS feed_positions (
    node TEXT PRIMARY KEY, last_id INTEGER NOT NULL
);
-- Rotated and revoked keys, so every process closes the sockets they opened.
CREATE TABLE IF NOT EXISTS key_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    role TEXT NOT NULL CHECK (role IN ('admin', 'store')),
    account_id INTEGER NOT NULL, kind TEXT NOT NULL, created TEXT NOT NULL
);
"""

_SESSION_SELECT = (
    "SELECT s.*, st.name AS store_name, st.email AS store_email,"
    " st.logo_url AS store_logo_url FROM sessions s JOIN stores st ON st.id = s.store_id"
)


def row_to_session(row: sqlite3.Row) -> Session:
    """The session a row of ``_SESSION_SELECT`` holds (its store joined in)."""
    return Session(
        id=row["id"],
        store=Store(row["store_id"], row["store_name"], row["store_email"], row["store_logo_url"]),
        admin_id=row["admin_id"],
        status=SessionStatus(row["status"]),
        last_message_at=row["last_message_at"],
        created=row["created"],
        updated=row["updated"],
        queued_at=row["queued_at"],
        activity_at=row["activity_at"],
        last_seq=row["last_seq"],
        first_store_message_at=row["first_store_message_at"],
        first_admin_reply_at=row["first_admin_reply_at"],
    )


def row_to_message(row: sqlite3.Row, id_column: str = "id") -> Message:
    """The message a ``messages`` row holds (its id under ``id_column``: ``m_id``
    in an ``EVENTS_SELECT`` row, where ``id`` is the event's)."""
    return Message(
        row[id_column],
        row["session_id"],
        row["seq"],
        row["sender"],
        row["sender_id"],
        row["body"],
        row["client_id"],
        row["created"],
        row["event"],
    )


def fetch_session(conn: sqlite3.Connection, session_id: int) -> Session | None:
    """The session with this id, or None."""
    return fetch_session_where(conn, "s.id = ?", (session_id,))


def fetch_written_session(conn: sqlite3.Connection, session_id: int) -> Session:
    """The session a write of this transaction has just changed: it exists."""
    session = fetch_session(conn, session_id)
    if session is None:  # the write itself found the row, in this transaction
        raise sqlite3.DatabaseError(f"session {session_id} is gone inside its own write")
    return session


def inserted_id(cur: sqlite3.Cursor) -> int:
    """The id the INSERT just run on ``cur`` gave its row."""
    if cur.lastrowid is None:  # only after a statement that inserted no row
        raise sqlite3.DatabaseError("the INSERT stored no row")
    return cur.lastrowid


def fetch_session_where(
    conn: sqlite3.Connection, where: str, args: Sequence[Any]
) -> Session | None:
    """The one session ``where`` (with ``args``) matches, or None."""
    row = conn.execute(f"{_SESSION_SELECT} WHERE {where}", args).fetchone()
    return row_to_session(row) if row else None


def fetch_sessions(
    conn: sqlite3.Connection, where: str, args: Sequence[Any], order: str, limit: int
) -> list[Session]:
    """The sessions ``where`` matches, in ``order``, at most ``limit``."""
    rows = conn.execute(f"{_SESSION_SELECT} WHERE {where} ORDER BY {order} LIMIT ?", [*args, limit])
    return [row_to_session(r) for r in rows]


def insert_session(conn: sqlite3.Connection, store_id: int) -> Session:
    """A new open session for the store, queued now."""
    now = utc_now_iso()
    cur = conn.execute(
        "INSERT INTO sessions (store_id, status, created, updated, queued_at, activity_at)"
        " VALUES (?, 'open', ?, ?, ?, ?)",
        (store_id, now, now, now, now),
    )
    return fetch_written_session(conn, inserted_id(cur))


def insert_message(
    conn: sqlite3.Connection,
    session: Session,
    sender: str,
    sender_id: int | None,
    body: str,
    client_id: str | None,
    event: str | None = None,
    audience_admin: int | None = None,
) -> tuple[Message, Session]:
    """Store a message with the next ``seq`` of its session, and its feed event.

    The ``seq`` comes from incrementing the session row inside this transaction,
    so it is allocated in the same atomic step that stores the message; the
    UNIQUE (session_id, seq) constraint backs that up.
    """
    now = utc_now_iso()
    counts_as_activity = sender != "system"  # system messages leave last_message_at
    row = conn.execute(
        "UPDATE sessions SET last_seq = last_seq + 1, activity_at = ?,"
        " last_message_at = CASE WHEN ? THEN ? ELSE last_message_at END,"
        " updated = CASE WHEN ? THEN ? ELSE updated END,"
        " first_store_message_at = COALESCE(first_store_message_at,"
        "     CASE WHEN ? = 'store' THEN ? END),"
        " first_admin_reply_at = COALESCE(first_admin_reply_at,"
        "     CASE WHEN ? = 'admin' THEN ? END)"
        " WHERE id = ? RETURNING last_seq, activity_at, last_message_at, updated,"
        " first_store_message_at, first_admin_reply_at",
        (
            now,
            counts_as_activity,
            now,
            counts_as_activity,
            now,
            sender,
            now,
            sender,
            now,
            session.id,
        ),
    ).fetchone()
    seq = row["last_seq"]
    cur = conn.execute(
        "INSERT INTO messages (session_id, seq, sender, sender_id, body, client_id, event,"
        " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (session.id, seq, sender, sender_id, body, client_id, event, now),
    )
    message = Message(
        inserted_id(cur), session.id, seq, sender, sender_id, body, client_id, now, event
    )
    # The session as the UPDATE left it, without reading it again.
    session = dataclasses.replace(session, **dict(row))
    insert_event(
        conn,
        "message",
        session,
        audience_admin,
        {"message": message_to_doc(message), "session": session_to_doc(session)},
    )
    return message, session


def find_by_client_id(
    conn: sqlite3.Connection, sender: str, sender_id: int, client_id: str | None
) -> PostResult | None:
    """The message first stored under this sender's ``client_id``, as a repeat."""
    if client_id is None:
        return None
    row = conn.execute(
        "SELECT * FROM messages WHERE sender = ? AND sender_id = ? AND client_id = ?",
        (sender, sender_id, client_id),
    ).fetchone()
    if row is None:
        return None
    message = row_to_message(row)
    return PostResult(
        WriteOutcome.DONE, message, fetch_session(conn, message.session_id), created=False
    )


def insert_event(
    conn: sqlite3.Connection,
    kind: str,
    session: Session,
    admin_id: int | None,
    payload: dict[str, Any],
) -> None:
    """Append a feed event; on the writer's connection, also hand it to the
    commit listener (``committed``) for delivery in this process."""
    cur = conn.execute(
        "INSERT INTO events (kind, session_id, store_id, admin_id, payload, created, origin)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            kind,
            session.id,
            session.store_id,
            admin_id,
            json.dumps(payload),
            time.time(),
            getattr(conn, "origin", None),
        ),
    )
    committed = getattr(conn, "committed", None)
    if committed is not None:
        committed.append(
            Event(inserted_id(cur), kind, session.id, session.store_id, admin_id, payload)
        )


# Columns added to events after its first release, for files made before them.
EVENT_COLUMNS_ADDED = (("message_id", "INTEGER"), ("origin", "TEXT"))


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a file made by an earlier version up to this schema (runs at setup)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    for name, kind in EVENT_COLUMNS_ADDED:
        if name not in have:
            conn.execute(f"ALTER TABLE events ADD COLUMN {name} {kind}")


# The feed's read: events in id order, a message event with its message row.
EVENTS_SELECT = (
    "SELECT e.id, e.kind, e.session_id, e.store_id, e.admin_id, e.payload,"
    " m.id AS m_id, m.seq, m.sender, m.sender_id, m.body, m.client_id, m.created, m.event"
    " FROM events e LEFT JOIN messages m ON m.id = e.message_id"
)


def row_to_event(row: sqlite3.Row) -> Event:
    """The event an ``EVENTS_SELECT`` row holds, with its message when it announces one."""
    if row["m_id"] is not None:
        payload = {"message": message_to_doc(row_to_message(row, "m_id"))}
    else:
        payload = json.loads(row["payload"])
    return Event(
        row["id"],
        row["kind"],
        row["session_id"],
        row["store_id"],
        row["admin_id"],
        payload,
        row["id"],
    )


# --- the support workflow (issue 12): read state, presence, webhooks -----------
WORKFLOW_DDL = """
-- The highest seq each side of a session has read; only ever raised.
CREATE TABLE IF NOT EXISTS session_reads (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    side TEXT NOT NULL CHECK (side IN ('store', 'admin')),
    seq INTEGER NOT NULL,
    PRIMARY KEY (session_id, side)
);
-- Heartbeats: how many sockets an admin has open on a node, as of `seen`
-- (epoch seconds). Rows not refreshed within the expiry stop counting, so a
-- SIGKILLed process's sockets stop counting without anyone cleaning up.
CREATE TABLE IF NOT EXISTS admin_presence (
    node TEXT NOT NULL, admin_id INTEGER NOT NULL,
    sockets INTEGER NOT NULL, seen REAL NOT NULL,
    PRIMARY KEY (node, admin_id)
);
CREATE INDEX IF NOT EXISTS admin_presence_by_admin ON admin_presence (admin_id, seen);
-- What the admin asked for (away) and the presence last announced for it:
-- announcing is a conditional change of `announced`, so it happens once.
CREATE TABLE IF NOT EXISTS admin_status (
    admin_id INTEGER PRIMARY KEY,
    away INTEGER NOT NULL DEFAULT 0,
    announced TEXT NOT NULL DEFAULT 'offline'
);
-- The webhook outbox: filled by a trigger on `events` (created while webhooks
-- are configured), so each entry commits in the same transaction as its change.
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id INTEGER PRIMARY KEY,          -- the event's id: commit order
    kind TEXT NOT NULL, session_id INTEGER NOT NULL,
    payload TEXT NOT NULL, created REAL NOT NULL,
    message_id INTEGER               -- where an event names its message instead of holding it
);
CREATE TABLE IF NOT EXISTS webhook_cursors (
    hook TEXT PRIMARY KEY, last_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL
);
"""

WEBHOOK_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS events_to_webhook_outbox AFTER INSERT ON events
WHEN NEW.kind IN ({kinds})
BEGIN
    INSERT INTO webhook_outbox (id, kind, session_id, payload, created, message_id)
    VALUES (NEW.id, NEW.kind, NEW.session_id, NEW.payload, NEW.created, {message_id});
END;
"""

# Every start creates the workflow's tables with the others.
DDL += WORKFLOW_DDL
