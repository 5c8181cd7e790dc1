"""Storing a group of chat messages at once (the SQLite writer's batch handler).

Every store or admin message posted while the writer is busy ends up in one
call of ``store_posts``, inside the group's transaction (so under SQLite's
write lock, serialised against every other process on the file). For the lot
it reads the repeated ``client_id``s in one query and the target sessions in
one or two, allocates each session's next ``seq`` numbers in Python from the
row it just read (the lock makes that read-then-write atomic; UNIQUE
(session_id, seq) backs it up), and writes with one ``executemany`` per table:
messages, sessions, events. A message event carries no JSON: it names its
message row, which is what the feed reads.
"""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from storage import sqlite_schema as schema
from storage.documents import session_to_doc
from storage.outcomes import PostResult, WriteOutcome, holder_refusal
from storage.records import Event, Message, Session, SessionStatus, Store, utc_now_iso


class Post(NamedTuple):
    """One message to store: from a store (to its active session, opened if
    none) or from an admin (to ``session_id``, which it must hold)."""

    sender: str  # "store" or "admin"
    sender_id: int
    session_id: int | None
    body: str
    client_id: str | None


def store_posts(conn: Any, posts: Sequence[Post]) -> list[PostResult]:
    """Store ``posts`` (in order) and answer each; runs inside a transaction."""
    results: list[PostResult | None] = [None] * len(posts)
    first_of: dict[tuple[str, int, str], int] = {}  # client_id repeated inside the group
    _answer_repeats(conn, posts, results, first_of)
    copies = _later_copies(first_of, posts)
    todo = [i for i, r in enumerate(results) if r is None and i not in copies]
    active = _active_sessions(conn, [posts[i] for i in todo if posts[i].sender == "store"])
    by_id = _sessions_by_id(conn, [posts[i] for i in todo if posts[i].sender == "admin"])
    now = utc_now_iso()
    accepted: list[tuple[int, Session]] = []
    for i in todo:
        post = posts[i]
        if post.sender == "store":
            session = active.get(post.sender_id)
            if session is None:  # the store's first message opens its session
                session = schema.insert_session(conn, post.sender_id)
                schema.insert_event(
                    conn,
                    "session_opened",
                    session,
                    None,
                    {"session": session_to_doc(session)},
                )
                active[post.sender_id] = session
        else:
            held = by_id.get(post.session_id) if post.session_id is not None else None
            refused = holder_refusal(held, post.sender_id)
            if refused:
                results[i] = PostResult(refused.outcome, session=refused.session)
                continue
            if held is None:  # (holder_refusal answered a missing session above)
                results[i] = PostResult(WriteOutcome.NOT_FOUND)
                continue
            session = held
        accepted.append((i, session))
    if accepted:
        _insert(conn, posts, accepted, results, now)
    for key, first in first_of.items():  # a copy inside the group repeats its first
        for i, post in enumerate(posts):
            if i != first and results[i] is None and _client_key(post) == key:
                stored = results[first]
                results[i] = (
                    dataclasses.replace(stored, created=False)
                    if stored is not None and stored.message is not None
                    else stored
                )
    answered: list[PostResult] = []
    for result in results:
        if result is None:  # every post is answered above: a bug of ours
            raise RuntimeError("a post of the group was left unanswered")
        answered.append(result)
    return answered


def _client_key(post: Post) -> tuple[str, int, str] | None:
    return (post.sender, post.sender_id, post.client_id) if post.client_id is not None else None


def _later_copies(first_of: dict[tuple[str, int, str], int], posts: Sequence[Post]) -> set[int]:
    if not first_of:
        return set()
    return {
        i for i, p in enumerate(posts) if (k := _client_key(p)) in first_of and first_of[k] != i
    }


def _answer_repeats(
    conn: Any,
    posts: Sequence[Post],
    results: list[PostResult | None],
    first_of: dict[tuple[str, int, str], int],
) -> None:
    """Posts whose ``client_id`` was stored before get that message back."""
    keyed = [(i, key) for i, p in enumerate(posts) if (key := _client_key(p)) is not None]
    if not keyed:
        return
    # ORed equalities: each one a search of the (sender, sender_id, client_id)
    # index (an IN over row values would scan the table).
    where = " OR ".join(["(sender = ? AND sender_id = ? AND client_id = ?)"] * len(keyed))
    rows = conn.execute(
        f"SELECT * FROM messages WHERE {where}", [part for _i, key in keyed for part in key]
    ).fetchall()
    stored = {(r["sender"], r["sender_id"], r["client_id"]): r for r in rows}
    sessions: dict[int, Session | None] = {}
    for i, key in keyed:
        row = stored.get(key)
        if row is None:
            first_of.setdefault(key, i)
            continue
        message = schema.row_to_message(row)
        if message.session_id not in sessions:
            sessions[message.session_id] = schema.fetch_session(conn, message.session_id)
        results[i] = PostResult(
            WriteOutcome.DONE, message, sessions[message.session_id], created=False
        )


def _active_sessions(conn: Any, posts: list[Post]) -> dict[int, Session]:
    store_ids = sorted({p.sender_id for p in posts})
    if not store_ids:
        return {}
    marks = ",".join("?" * len(store_ids))
    sessions = _fetch_sessions(conn, f"s.store_id IN ({marks}) AND s.status != 'closed'", store_ids)
    return {s.store_id: s for s in sessions}


def _sessions_by_id(conn: Any, posts: list[Post]) -> dict[int, Session]:
    ids = sorted({p.session_id for p in posts if p.session_id is not None})
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    return {s.id: s for s in _fetch_sessions(conn, f"s.id IN ({marks})", ids)}


# The group's sessions as one JSON row: one step of SQLite (one release of the
# GIL) instead of one per session.
_SESSIONS_AS_JSON = (
    "SELECT json_group_array(json_array(s.id, s.store_id, st.name, st.email, st.logo_url,"
    " s.admin_id, s.status, s.last_message_at, s.created, s.updated, s.queued_at,"
    " s.activity_at, s.last_seq, s.first_store_message_at, s.first_admin_reply_at))"
    " FROM sessions s JOIN stores st ON st.id = s.store_id WHERE "
)


def _fetch_sessions(conn: Any, where: str, args: list[int]) -> list[Session]:
    try:
        (text,) = conn.execute(_SESSIONS_AS_JSON + where, args).fetchone()
    except sqlite3.OperationalError:  # an SQLite built without JSON functions
        return schema.fetch_sessions(conn, where, args, "s.id", len(args))
    return [
        Session(
            r[0],
            Store(r[1], r[2], r[3], r[4]),
            r[5],
            _STATUS[r[6]],
            r[7],
            r[8],
            r[9],
            r[10],
            r[11],
            r[12],
            r[13],
            r[14],
        )
        for r in orjson.loads(text)
    ]


_STATUS = {status.value: status for status in SessionStatus}


def _insert(
    conn: Any,
    posts: Sequence[Post],
    accepted: list[tuple[int, Session]],
    results: list[PostResult | None],
    now: str,
) -> None:
    """Allocate ids and seqs, write the three tables, answer the posts."""
    counters = dict(
        conn.execute("SELECT name, seq FROM sqlite_sequence WHERE name IN ('messages', 'events')")
    )
    message_id = counters.get("messages", 0)
    event_id = counters.get("events", 0)
    created = time.time()
    origin = getattr(conn, "origin", None)
    # Per session: [session as read, last seq, first store message, first admin reply].
    state: dict[int, list[Any]] = {}
    message_rows, event_rows = [], []
    for i, session in accepted:
        post = posts[i]
        entry = state.get(session.id)
        if entry is None:
            entry = state[session.id] = [
                session,
                session.last_seq,
                session.first_store_message_at,
                session.first_admin_reply_at,
            ]
        message_id += 1
        event_id += 1
        entry[1] = seq = entry[1] + 1
        if post.sender == "store":
            entry[2] = entry[2] or now
        else:
            entry[3] = entry[3] or now
        message_rows.append(
            (
                message_id,
                session.id,
                seq,
                post.sender,
                post.sender_id,
                post.body,
                post.client_id,
                now,
            )
        )
        event_rows.append(
            (event_id, session.id, session.store_id, session.admin_id, created, message_id, origin)
        )
    # One statement per table for the group: each statement is one trip into
    # SQLite (and one release of the GIL), where executemany makes one a row.
    _insert_rows(
        conn,
        "INSERT INTO messages (id, session_id, seq, sender, sender_id, body,"
        " client_id, created) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?)",
        message_rows,
    )
    updates = [
        (sid, last_seq, first_store, first_admin)
        for sid, (_s, last_seq, first_store, first_admin) in state.items()
    ]
    for chunk in _chunks(updates):
        conn.execute(
            "UPDATE sessions SET last_seq = v.column2, activity_at = ?1, last_message_at = ?1,"
            " updated = ?1, first_store_message_at = v.column3, first_admin_reply_at = v.column4"
            " FROM (VALUES " + ",".join(["(?, ?, ?, ?)"] * len(chunk)) + ") AS v"
            " WHERE sessions.id = v.column1",
            [now, *itertools.chain.from_iterable(chunk)],
        )
    _insert_rows(
        conn,
        "INSERT INTO events (id, kind, session_id, store_id, admin_id, payload,"
        " created, message_id, origin) VALUES ",
        "(?, 'message', ?, ?, ?, '', ?, ?, ?)",
        event_rows,
    )
    # Each session's record as this group leaves it, built once per session.
    after = {
        sid: Session(
            s.id,
            s.store,
            s.admin_id,
            s.status,
            now,
            s.created,
            now,
            s.queued_at,
            now,
            last_seq,
            first_store,
            first_admin,
        )
        for sid, (s, last_seq, first_store, first_admin) in state.items()
    }
    committed = getattr(conn, "committed", None)
    for (i, _session), m, e in zip(accepted, message_rows, event_rows, strict=True):
        message = Message(m[0], m[1], m[2], m[3], m[4], m[5], m[6], now, None)
        results[i] = PostResult(WriteOutcome.DONE, message, after[m[1]], created=True)
        if committed is not None:
            doc = {
                "id": m[0],
                "session_id": m[1],
                "seq": m[2],
                "sender": m[3],
                "sender_id": m[4],
                "body": m[5],
                "client_id": m[6],
                "created": now,
                "event": None,
            }
            committed.append(Event(e[0], "message", m[1], e[2], e[3], {"message": doc}))


# Rows per multi-row statement: well under SQLite's 32,766 bound parameters.
ROWS_PER_STATEMENT = 500


def _chunks(rows: list[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    return [rows[i : i + ROWS_PER_STATEMENT] for i in range(0, len(rows), ROWS_PER_STATEMENT)]


def _insert_rows(conn: Any, head: str, row_marks: str, rows: list[tuple[Any, ...]]) -> None:
    for chunk in _chunks(rows):
        conn.execute(
            head + ",".join([row_marks] * len(chunk)), list(itertools.chain.from_iterable(chunk))
        )
