"""The SQLite backend's connections: the writer, the reader threads, the
event loop's own read-only connection, and the lifecycle of the file.

Writes go through ``GroupCommitWriter`` (one write connection per process, one
transaction per group, each write atomic under SQLite's write lock); reads use
a small pool of reader threads with their own connections, which WAL lets run
beside the writer. The concept modules (``sqlite_accounts``, ``sqlite_sessions``,
``sqlite_messages``, ``sqlite_feed``) build their methods on these.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from storage import sqlite_schema as schema
from storage.checkpoint import Checkpointer
from storage.errors import StorageUnavailable
from storage.group_commit import GroupCommitWriter, WriterConnection
from storage.threads import name_os_thread

# How long a statement waits for another process's write lock before failing.
BUSY_TIMEOUT_MS = 10_000
READER_THREADS = 2

# What a read or write function gives back, handed on to the caller.
T = TypeVar("T")
# A batched write: each item, and its answer.
Item = TypeVar("Item")
R = TypeVar("R")


class SQLiteConnection:
    """One SQLite file in WAL mode: how every method of ``SQLiteStorage`` reaches it."""

    def __init__(
        self, path: str, synchronous: str = "FULL", page_size: int = schema.DEFAULT_PAGE_SIZE
    ):
        self.path = path
        self._synchronous = synchronous
        self._page_size = page_size
        self._writer: GroupCommitWriter | None = None
        self._checkpointer: Checkpointer | None = None
        self._local = threading.local()
        # Stamped on the events this process writes, so its feed reader can
        # leave them out (they are delivered straight from the commit).
        self.origin = secrets.token_hex(8)
        self._loop_conns: list[sqlite3.Connection] = []  # see _loop_connection
        self._readers = ThreadPoolExecutor(
            READER_THREADS,
            thread_name_prefix="sqlite-read",
            initializer=name_os_thread,
            initargs=("sqlite-read",),
        )

    def _connect(
        self, factory: type[sqlite3.Connection] = sqlite3.Connection, create: bool = False
    ) -> sqlite3.Connection:
        """A connection to the database file; only ``setup`` may ``create`` it.

        Every other connection (reader threads, the writer, the checkpointer)
        opens lazily, maybe long after start: were the file moved or deleted by
        then, a plain ``connect`` would make a new, empty database there and
        serve it. They open the existing file only (``mode=rw``), so a missing
        file is an outage (``StorageUnavailable``) instead."""
        conn = sqlite3.connect(
            _file_uri(self.path, create),
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
            factory=factory,
        )
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

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StorageUnavailable("storage is closed")
        try:
            return await self._writer.submit(fn)
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(str(exc)) from exc

    async def _write_batched(
        self, handler: Callable[[sqlite3.Connection, Sequence[Item]], list[R]], item: Item
    ) -> R:
        """``item`` written by ``handler`` with the group's other items for it."""
        if self._writer is None:
            raise StorageUnavailable("storage is closed")
        try:
            return await self._writer.submit_batched(handler, item)
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(str(exc)) from exc

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._connect()
            return fn(conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, run)
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(str(exc)) from exc

    # --- lifecycle ------------------------------------------------------
    async def setup(self) -> None:
        """Create the file (and its folder) if missing and bring its schema up
        to date; runs once, before serving. The file work runs off the loop."""
        await asyncio.get_running_loop().run_in_executor(None, self._create_file)
        self._writer = GroupCommitWriter(self._connect_writer, origin=self.origin)
        self._checkpointer = Checkpointer(self._connect)

    def _create_file(self) -> None:
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
            raise StorageUnavailable(
                f"cannot create {self.path}: {exc.strerror}: {exc.filename}"
            ) from exc
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot open {self.path}: {exc}") from exc

    def _connect_writer(self) -> WriterConnection:
        conn = self._connect(WriterConnection)
        if not isinstance(conn, WriterConnection):  # sqlite3.connect made it with that factory
            raise TypeError(f"expected a WriterConnection, got {type(conn).__name__}")
        # Commits never checkpoint: the Checkpointer thread does, off their path.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        return conn

    async def close(self) -> None:
        """Stop the writer (after this loop pass's writes), the checkpointer and the reader
        threads, and close every connection."""
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
        """Raise ``StorageUnavailable`` unless the file is there and answers.

        An open connection keeps reading a file that was moved or deleted, so
        the path is checked too (a stat: in a reader thread, off the loop)."""
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(self._readers, os.path.exists, self.path):
            raise StorageUnavailable(f"database file {self.path} is missing")
        await self._read(lambda c: c.execute("SELECT 1 FROM sessions LIMIT 1").fetchall())

    def _loop_connection(self) -> sqlite3.Connection:
        """This thread's read-only connection for reads on the event loop
        (``SQLiteAccounts._lookup_now``): no busy timeout, so a locked database
        raises ``sqlite3.OperationalError`` at once instead of blocking the loop."""
        conn = getattr(self._local, "loop_conn", None)
        if conn is None:
            conn = sqlite3.connect(
                _file_uri(self.path, create=False),
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=0,
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only = ON")
            self._local.loop_conn = conn
            self._loop_conns.append(conn)
        return conn


def _file_uri(path: str, create: bool) -> str:
    """The SQLite URI of the database file at ``path``: ``mode=rwc`` may create
    it, ``mode=rw`` opens it only if it exists."""
    mode = "rwc" if create else "rw"
    return f"file:{urllib.parse.quote(os.path.abspath(path))}?mode={mode}"
