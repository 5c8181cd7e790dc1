"""The embedded default backend: one SQLite file in WAL mode.

Writes go through ``GroupCommitWriter`` (one write connection per process, one
transaction per group, each write atomic under SQLite's write lock); reads use
a small pool of reader threads with their own connections, which WAL lets run
beside the writer. Several server processes may share one file: the write lock
serialises them, and the guards below are single statements or run inside one
``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import sqlite3
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from storage import sqlite_schema as schema
from storage import sqlite_workflow as flow
from storage.base import Reply
from storage.checkpoint import Checkpointer
from storage.documents import session_to_doc
from storage.errors import StorageUnavailable
from storage.group_commit import CommitListener, GroupCommitWriter, WriterConnection
from storage.keys import digest_key, new_api_key, revoked_digest
from storage.outcomes import (
    ClaimOutcome,
    ClaimResult,
    PostResult,
    SessionWrite,
    WriteOutcome,
    holder_refusal,
    why_claim_failed,
)
from storage.records import (
    Admin,
    Event,
    KeyChange,
    Message,
    Principal,
    Role,
    Session,
    SessionStatus,
    Store,
    utc_now_iso,
)
from storage.sqlite_posts import Post, store_posts
from storage.threads import name_os_thread
from storage.workflow import (
    AdminPresence,
    OutboxEntry,
    ReadResult,
    StaleClaim,
    StaleCutoffs,
    TransferResult,
)

# How long a statement waits for another process's write lock before failing.
BUSY_TIMEOUT_MS = 10_000
READER_THREADS = 2


class SQLiteStorage:
    """``ChatStorage`` over one SQLite file."""

    # Writes of one kind (session changes; message posts) reach the database
    # in the order they were submitted: one writer thread, FIFO, each group's
    # items in order. The session actor relies on it to overlap commands.
    writes_in_submission_order = True

    def __init__(self, path: str, synchronous: str = "FULL",
                 page_size: int = schema.DEFAULT_PAGE_SIZE):
        self.path = path
        self._synchronous = synchronous
        self._page_size = page_size
        self._writer: GroupCommitWriter | None = None
        self._checkpointer: Checkpointer | None = None
        self._local = threading.local()
        # Stamped on the events this process writes, so its feed reader can
        # leave them out (they are delivered straight from the commit).
        self.origin = secrets.token_hex(8)
        self._loop_conns: list[sqlite3.Connection] = []  # see _lookup_now
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="sqlite-read",
                                           initializer=name_os_thread, initargs=("sqlite-read",))

    @classmethod
    def from_url(cls, url: str, **options: Any) -> "SQLiteStorage":
        """``sqlite:///relative/path.sqlite3`` or ``sqlite:////absolute/path``."""
        path = url[len("sqlite:///"):]
        if not path:
            raise ValueError(f"no file in storage URL {url!r}")
        return cls(path, **options)

    def _connect(self, factory: type = sqlite3.Connection,
                 create: bool = False) -> sqlite3.Connection:
        """A connection to the database file; only ``setup`` may ``create`` it.

        Every other connection (reader threads, the writer, the checkpointer)
        opens lazily, maybe long after start: were the file moved or deleted by
        then, a plain ``connect`` would make a new, empty database there and
        serve it. They open the existing file only (``mode=rw``), so a missing
        file is an outage (``StorageUnavailable``) instead."""
        conn = sqlite3.connect(_file_uri(self.path, create), uri=True, isolation_level=None,
                               check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000,
                               factory=factory)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Takes effect only on a file that has no page yet (before WAL mode is
        # set on it); an existing database keeps the size it was made with.
        conn.execute(f"PRAGMA page_size = {self._page_size}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed message survives power loss, not only a crash.
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    async def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._writer is None:
            raise StorageUnavailable("storage is closed")
        try:
            return await self._writer.submit(fn)
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(str(exc)) from exc

    async def _session_write(self, fn: Callable[[sqlite3.Connection, "KnownSessions"], Any]
                             ) -> Any:
        """A claim, release or close. Those queued together share one savepoint
        and reach the database in the order they were submitted (the session
        actor overlaps them on that promise), and read each session once
        (``KnownSessions``): ten admins racing for a session cost one read and
        one guarded UPDATE, the nine losers decided from the winner's row."""
        return await self._write_batched(_in_order, fn)

    async def _write_batched(self, handler: Any, item: Any) -> Any:
        """``item`` written by ``handler`` with the group's other items for it."""
        if self._writer is None:
            raise StorageUnavailable("storage is closed")
        try:
            return await self._writer.submit_batched(handler, item)
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(str(exc)) from exc

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        def run() -> Any:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._connect()
            return fn(conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, run)
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(str(exc)) from exc

    # --- lifecycle ------------------------------------------------------
    async def setup(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, exist_ok=True)
            conn = self._connect(create=True)
            try:
                conn.executescript(schema.DDL)
                schema.migrate(conn)
            finally:
                conn.close()
        except OSError as exc:  # the data folder cannot be made or written
            raise StorageUnavailable(f"cannot create {self.path}: "
                                     f"{exc.strerror}: {exc.filename}") from exc
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot open {self.path}: {exc}") from exc
        self._writer = GroupCommitWriter(self._connect_writer, origin=self.origin)
        self._checkpointer = Checkpointer(self._connect)

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect(WriterConnection)
        # Commits never checkpoint: the Checkpointer thread does, off their path.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        return conn

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.hand_over()  # this pass's messages go before the stop marker
            await asyncio.get_running_loop().run_in_executor(None, writer.stop)
        if self._checkpointer is not None:
            checkpointer, self._checkpointer = self._checkpointer, None
            await asyncio.get_running_loop().run_in_executor(None, checkpointer.stop)
        self._readers.shutdown(wait=True)
        for conn in self._loop_conns:
            conn.close()
        self._loop_conns.clear()
        self._local.loop_conn = None

    async def ping(self) -> None:
        if not os.path.exists(self.path):
            raise StorageUnavailable(f"database file {self.path} is missing")
        await self._read(lambda c: c.execute("SELECT 1 FROM sessions LIMIT 1").fetchall())

    # --- accounts -------------------------------------------------------
    async def create_admin(self, name: str, email: str | None) -> tuple[Admin, str]:
        key = new_api_key()

        def write(conn: sqlite3.Connection) -> Admin:
            cur = conn.execute(
                "INSERT INTO admins (name, email, key_digest, created) VALUES (?, ?, ?, ?)",
                (name, email, digest_key(key), utc_now_iso()))
            return Admin(cur.lastrowid, name, email)

        return await self._write(write), key

    async def create_store(self, name: str, email: str | None,
                           logo_url: str | None) -> tuple[Store, str]:
        key = new_api_key()

        def write(conn: sqlite3.Connection) -> Store:
            cur = conn.execute(
                "INSERT INTO stores (name, email, logo_url, key_digest, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, email, logo_url, digest_key(key), utc_now_iso()))
            return Store(cur.lastrowid, name, email, logo_url)

        return await self._write(write), key

    async def authenticate(self, key: str) -> Principal | None:
        # Read every time, not cached: rotate-key and revoke-key (another
        # process) must take effect at once (API.md).
        if self._writer is None:
            raise StorageUnavailable("storage is closed")
        digest = digest_key(key)
        try:
            return _principal_of(self._lookup_now(digest))
        except sqlite3.OperationalError:
            # Locked (recovery, another process's exclusive lock) or failing:
            # the reader threads wait out the busy timeout and report outages.
            return _principal_of(await self._read(lambda c: _key_owner_row(c, digest)))

    def _lookup_now(self, digest: str) -> sqlite3.Row | None:
        """The key's owner, read on the calling (event loop) thread.

        One indexed point read costs less than the hand-off to a reader thread
        and back (every request and auth frame makes one). It never waits: its
        connection has no busy timeout, so a locked database raises at once
        and the caller falls back to the reader threads."""
        conn = getattr(self._local, "loop_conn", None)
        if conn is None:
            conn = sqlite3.connect(_file_uri(self.path, create=False), uri=True,
                                   isolation_level=None, check_same_thread=False, timeout=0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only = ON")
            self._local.loop_conn = conn
            self._loop_conns.append(conn)
        return _key_owner_row(conn, digest)

    async def get_store(self, store_id: int) -> Store | None:
        row = await self._read(lambda c: c.execute(
            "SELECT id, name, email, logo_url FROM stores WHERE id = ?", (store_id,)).fetchone())
        return Store(row["id"], row["name"], row["email"], row["logo_url"]) if row else None

    async def get_admin(self, admin_id: int) -> Admin | None:
        row = await self._read(lambda c: c.execute(
            "SELECT id, name, email FROM admins WHERE id = ?", (admin_id,)).fetchone())
        return Admin(row["id"], row["name"], row["email"]) if row else None

    async def count_accounts(self) -> int:
        return await self._read(lambda c: c.execute(
            "SELECT (SELECT COUNT(*) FROM admins) + (SELECT COUNT(*) FROM stores)"
        ).fetchone()[0])

    # --- sessions -------------------------------------------------------
    async def get_session(self, session_id: int) -> Session | None:
        return await self._read(lambda c: schema.fetch_session(c, session_id))

    async def get_active_session(self, store_id: int) -> Session | None:
        return await self._read(lambda c: schema.fetch_session_where(
            c, "s.store_id = ? AND s.status != 'closed'", (store_id,)))

    async def list_open_sessions(self, limit: int,
                                 after: tuple[str, int] | None) -> list[Session]:
        where, args = "s.status = 'open'", []
        if after:
            where += " AND (s.queued_at, s.id) > (?, ?)"
            args += list(after)
        return await self._read(lambda c: schema.fetch_sessions(
            c, where, args, "s.queued_at, s.id", limit))

    async def list_admin_sessions(self, admin_id: int, limit: int,
                                  before: tuple[str, int] | None) -> list[Session]:
        where, args = "s.status = 'claimed' AND s.admin_id = ?", [admin_id]
        if before:
            where += " AND (s.activity_at, s.id) < (?, ?)"
            args += list(before)
        return await self._read(lambda c: schema.fetch_sessions(
            c, where, args, "s.activity_at DESC, s.id DESC", limit))

    async def list_store_sessions(self, store_id: int, limit: int,
                                  before: tuple[str, int] | None) -> list[Session]:
        where, args = "s.store_id = ?", [store_id]
        if before:
            where += " AND (s.created, s.id) < (?, ?)"
            args += list(before)
        return await self._read(lambda c: schema.fetch_sessions(
            c, where, args, "s.created DESC, s.id DESC", limit))

    async def count_open_sessions(self) -> int:
        return await self._read(lambda c: c.execute(
            "SELECT COUNT(*) FROM sessions WHERE status = 'open'").fetchone()[0])

    async def claim_session(self, session_id: int, admin: Admin,
                            max_sessions: int) -> ClaimResult:
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
                (admin.id, now, now, session_id, max_sessions, admin.id, max_sessions))
            if cur.rowcount != 1:
                return ClaimResult(why_claim_failed(current, admin.id, limit_hit=True), current)
            # The row as the UPDATE left it, without reading it again.
            session = dataclasses.replace(current, status=SessionStatus.CLAIMED,
                                          admin_id=admin.id, updated=now, activity_at=now)
            payload = {"session": session_to_doc(session),
                       "admin": {"id": admin.id, "name": admin.name}}
            schema.insert_event(conn, "session_claimed", session, admin.id, payload)
            _, session = schema.insert_message(
                conn, session, "system", None, f"{admin.name} joined the chat",
                None, event="admin_connected", audience_admin=admin.id)
            known.wrote(session)
            return ClaimResult(ClaimOutcome.WON, session)

        return await self._session_write(write)

    async def release_session(self, session_id: int, admin_id: int) -> SessionWrite:
        def write(conn: sqlite3.Connection, known: KnownSessions) -> SessionWrite:
            failed = holder_refusal(known.read(conn, session_id), admin_id)
            if failed:
                return failed
            now = utc_now_iso()
            conn.execute(
                "UPDATE sessions SET status = 'open', admin_id = NULL, updated = ?,"
                " queued_at = ?, activity_at = ? WHERE id = ?", (now, now, now, session_id))
            session = schema.fetch_session(conn, session_id)
            _, session = schema.insert_message(
                conn, session, "system", None, "The session went back to the queue",
                None, event="session_released", audience_admin=admin_id)
            schema.insert_event(conn, "session_released", session, admin_id,
                                {"session": session_to_doc(session)})
            known.wrote(session)
            return SessionWrite(WriteOutcome.DONE, session)

        return await self._session_write(write)

    async def close_session(self, session_id: int, admin_id: int) -> SessionWrite:
        def write(conn: sqlite3.Connection, known: KnownSessions) -> SessionWrite:
            failed = holder_refusal(known.read(conn, session_id), admin_id, closed_ok=True)
            if failed:
                return failed
            now = utc_now_iso()
            conn.execute("UPDATE sessions SET status = 'closed', updated = ?,"
                         " activity_at = ? WHERE id = ?", (now, now, session_id))
            session = schema.fetch_session(conn, session_id)
            _, session = schema.insert_message(
                conn, session, "system", None, "The session was closed", None,
                event="session_closed", audience_admin=admin_id)
            schema.insert_event(conn, "session_closed", session, admin_id,
                                {"session": session_to_doc(session)})
            known.wrote(session)
            return SessionWrite(WriteOutcome.DONE, session)

        return await self._session_write(write)

    # --- messages -------------------------------------------------------
    async def post_admin_message(self, session_id: int, admin_id: int, body: str,
                                 client_id: str | None) -> PostResult:
        return await self._post(Post("admin", admin_id, session_id, body, client_id))

    async def post_store_message(self, store_id: int, body: str,
                                 client_id: str | None) -> PostResult:
        return await self._post(Post("store", store_id, None, body, client_id))

    async def _post(self, post: Post) -> PostResult:
        # Posts waiting for the same group are stored together (sqlite_posts).
        return await self._write_batched(store_posts, post)

    # The same two posts answered by a callback, for the message path
    # (``SessionActor.start_now``): no future or coroutine per message.
    def post_admin_message_with_reply(self, session_id: int, admin_id: int, body: str,
                                      client_id: str | None, reply: Reply) -> None:
        self._post_with_reply(Post("admin", admin_id, session_id, body, client_id), reply)

    def post_store_message_with_reply(self, store_id: int, body: str, client_id: str | None,
                                      reply: Reply) -> None:
        self._post_with_reply(Post("store", store_id, None, body, client_id), reply)

    def _post_with_reply(self, post: Post, reply: Reply) -> None:
        def answer(result: Any, exc: BaseException | None) -> None:
            if isinstance(exc, sqlite3.OperationalError):
                exc = StorageUnavailable(str(exc))
            reply(result, exc)

        if self._writer is None:
            asyncio.get_running_loop().call_soon(
                reply, None, StorageUnavailable("storage is closed"))
            return
        self._writer.submit_batched_with_reply(store_posts, post, answer)

    async def list_messages(self, session_id: int, after_seq: int,
                            limit: int) -> list[Message]:
        return await self._read(lambda c: [schema.row_to_message(r) for r in c.execute(
            "SELECT * FROM messages WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (session_id, after_seq, limit))])

    # --- change feed ----------------------------------------------------
    async def append_typing(self, session: Session, sender: str) -> None:
        await self._write(lambda c: schema.insert_event(
            c, "typing", session, session.admin_id,
            {"session_id": session.id, "sender": sender}))

    # A feed position here is an event id: ids are given in commit order by
    # the one writer at a time SQLite allows.
    async def feed_head(self) -> int:
        return await self._read(lambda c: c.execute(
            "SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

    async def read_events(self, after_id: int, limit: int) -> list[Event]:
        rows = await self._read(lambda c: c.execute(
            f"{schema.EVENTS_SELECT} WHERE e.id > ? ORDER BY e.id LIMIT ?",
            (after_id, limit)).fetchall())
        return [schema.row_to_event(r) for r in rows]

    # --- this process's own events (optional hooks the feed looks for) -------
    def set_commit_listener(self, listener: CommitListener | None) -> None:
        """Hand the events this process commits to ``listener`` right after each
        commit, in commit order (on the calling loop; set at start, None at stop)."""
        if self._writer is not None:
            self._writer.set_commit_listener(listener)

    def first_unannounced_event_id(self) -> int | None:
        """The smallest event id this process committed but has not yet handed
        to the listener: the feed must not deliver past it."""
        return self._writer.first_unannounced_event_id() if self._writer else None

    async def read_foreign_events(self, after_id: int, limit: int) -> list[Event]:
        """Like ``read_events``, leaving out the events this process wrote."""
        rows = await self._read(lambda c: c.execute(
            f"{schema.EVENTS_SELECT} WHERE e.id > ? AND e.origin IS NOT ?"
            " ORDER BY e.id LIMIT ?", (after_id, self.origin, limit)).fetchall())
        return [schema.row_to_event(r) for r in rows]

    async def prune_events(self, older_than_secs: float) -> int:
        cutoff = time.time() - older_than_secs
        return await self._write(lambda c: c.execute(
            "DELETE FROM events WHERE created < ?", (cutoff,)).rowcount)

    async def load_feed_position(self, node: str) -> int | None:
        row = await self._read(lambda c: c.execute(
            "SELECT last_id FROM feed_positions WHERE node = ?", (node,)).fetchone())
        return row[0] if row else None

    async def save_feed_position(self, node: str, last_id: int) -> None:
        await self._write(lambda c: c.execute(
            "INSERT INTO feed_positions (node, last_id) VALUES (?, ?)"
            " ON CONFLICT (node) DO UPDATE SET last_id = excluded.last_id", (node, last_id)))

    # --- account administration -----------------------------------------
    async def list_admins(self) -> list[Admin]:
        return await self._read(lambda c: [
            Admin(r["id"], r["name"], r["email"])
            for r in c.execute("SELECT id, name, email FROM admins ORDER BY id")])

    async def list_stores(self) -> list[Store]:
        return await self._read(lambda c: [
            Store(r["id"], r["name"], r["email"], r["logo_url"])
            for r in c.execute("SELECT id, name, email, logo_url FROM stores ORDER BY id")])

    async def rotate_key(self, role: Role, account_id: int) -> str | None:
        key = new_api_key()
        changed = await self._change_key(role, account_id, digest_key(key), "rotated")
        return key if changed else None

    async def revoke_key(self, role: Role, account_id: int) -> bool:
        return await self._change_key(role, account_id, revoked_digest(), "revoked")

    async def _change_key(self, role: Role, account_id: int, digest: str, kind: str) -> bool:
        table = "admins" if role is Role.ADMIN else "stores"

        def write(conn: sqlite3.Connection) -> bool:
            # The new digest and its announcement in one transaction: a watcher
            # that sees the change finds the old key already refused.
            cur = conn.execute(f"UPDATE {table} SET key_digest = ? WHERE id = ?",
                               (digest, account_id))
            if cur.rowcount != 1:
                return False
            conn.execute("INSERT INTO key_changes (role, account_id, kind, created)"
                         " VALUES (?, ?, ?, ?)", (role.value, account_id, kind, utc_now_iso()))
            return True

        return await self._write(write)

    async def key_changes_head(self) -> int:
        return await self._read(lambda c: c.execute(
            "SELECT COALESCE(MAX(id), 0) FROM key_changes").fetchone()[0])

    async def key_changes_since(self, after_id: int) -> list[KeyChange]:
        return await self._read(lambda c: [
            KeyChange(r["id"], Role(r["role"]), r["account_id"], r["kind"], r["id"])
            for r in c.execute("SELECT * FROM key_changes WHERE id > ? ORDER BY id",
                               (after_id,))])

    # --- the support workflow (storage/workflow.py states the rules) -------------
    async def transfer_session(self, session_id: int, admin_id: int, target_id: int,
                               max_sessions: int) -> TransferResult:
        return await self._write(lambda c: flow.transfer_write(
            c, session_id, admin_id, target_id, max_sessions))

    async def mark_read(self, session_id: int, side: str, reader_id: int,
                        seq: int) -> ReadResult:
        return await self._write(lambda c: flow.mark_read_write(
            c, session_id, side, reader_id, seq))

    async def unread_counts(self, session_ids: list[int], side: str) -> dict[int, int]:
        return await self._read(lambda c: flow.unread_counts(c, session_ids, side))

    async def read_positions(self, session_id: int) -> dict[str, int]:
        return await self._read(lambda c: flow.read_positions(c, session_id))

    async def set_presence_sockets(self, node: str, admin_id: int, sockets: int,
                                   live_after: float) -> str | None:
        return await self._write(lambda c: flow.set_sockets_write(
            c, node, admin_id, sockets, live_after))

    async def set_admin_away(self, admin_id: int, away: bool,
                             live_after: float) -> str | None:
        return await self._write(lambda c: flow.set_away_write(c, admin_id, away, live_after))

    async def heartbeat_presence(self, node: str, sockets: dict[int, int],
                                 live_after: float) -> list[tuple[int, str]]:
        return await self._write(lambda c: flow.heartbeat_write(c, node, dict(sockets),
                                                                live_after))

    async def list_admins_with_presence(self, limit: int, after_id: int,
                                        live_after: float) -> list[AdminPresence]:
        return await self._read(lambda c: flow.list_admins_with_presence(
            c, limit, after_id, live_after))

    async def find_stale_claims(self, cutoffs: StaleCutoffs, limit: int) -> list[StaleClaim]:
        return await self._read(lambda c: flow.find_stale_claims(c, cutoffs, limit))

    async def requeue_session(self, stale: StaleClaim, cutoffs: StaleCutoffs) -> SessionWrite:
        return await self._write(lambda c: flow.requeue_write(c, stale, cutoffs))

    async def set_webhook_outbox(self, kinds: tuple[str, ...]) -> None:
        await self._write(lambda c: flow.set_outbox_trigger(c, kinds))

    async def read_outbox(self, after_id: int, limit: int) -> list[OutboxEntry]:
        return await self._read(lambda c: flow.read_outbox(c, after_id, limit))

    async def load_webhook_cursor(self, hook: str) -> int:
        row = await self._read(lambda c: c.execute(
            "SELECT last_id FROM webhook_cursors WHERE hook = ?", (hook,)).fetchone())
        return row[0] if row else 0

    async def save_webhook_cursor(self, hook: str, last_id: int) -> None:
        await self._write(lambda c: flow.advance_cursor_write(c, hook, last_id))

    async def prune_outbox(self, hooks: tuple[str, ...]) -> int:
        return await self._write(lambda c: flow.prune_outbox_write(c, hooks))

    async def take_lease(self, name: str, holder: str, duration_secs: float) -> bool:
        return await self._write(lambda c: flow.take_lease_write(c, name, holder,
                                                                 duration_secs))


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


def _in_order(conn: sqlite3.Connection,
              writes: list[Callable[[sqlite3.Connection, KnownSessions], Any]]) -> list[Any]:
    """The batch handler of ``_session_write``: each write, in order, sharing
    what they read (``KnownSessions``). If one raises, the group-commit writer
    rolls the group back and runs them again one by one, each alone (and each
    with nothing known)."""
    known = KnownSessions()
    return [write(conn, known) for write in writes]


def _file_uri(path: str, create: bool) -> str:
    """The SQLite URI of the database file at ``path``: ``mode=rwc`` may create
    it, ``mode=rw`` opens it only if it exists."""
    mode = "rwc" if create else "rw"
    return f"file:{urllib.parse.quote(os.path.abspath(path))}?mode={mode}"


def _key_owner_row(conn: sqlite3.Connection, digest: str) -> sqlite3.Row | None:
    """The admin or store whose key has ``digest`` (one statement, one snapshot;
    fetchall ends the read at once, so no snapshot is held open)."""
    rows = conn.execute(
        "SELECT 'admin' AS role, id, name, email, NULL AS logo_url FROM admins"
        " WHERE key_digest = ?1 UNION ALL"
        " SELECT 'store', id, name, email, logo_url FROM stores WHERE key_digest = ?1",
        (digest,)).fetchall()
    return rows[0] if rows else None


def _principal_of(row: sqlite3.Row | None) -> Principal | None:
    if row is None:
        return None
    return Principal(Role(row["role"]), row["id"], row["name"], row["email"], row["logo_url"])
