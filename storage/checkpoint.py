"""WAL checkpoints on their own thread, off the commit path.

By default SQLite checkpoints inside the COMMIT that takes the WAL past 1,000
pages: that commit copies the WAL into the database and syncs it, and every
message waiting for that group waits too (the open-loop p99 showed it). Here
the writer's connection does not checkpoint; ``Checkpointer`` runs a PASSIVE
checkpoint every interval on its own connection, which never blocks a writer
or a reader. Durability is the WAL's, synced at every commit as before.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

from storage.threads import name_os_thread

log = logging.getLogger(__name__)

# Often enough that the WAL stays small (a few thousand messages' pages).
CHECKPOINT_INTERVAL_SECS = 0.5


class Checkpointer:
    """Checkpoints the WAL into the database file on a thread of its own, off the commits' path."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        interval_secs: float = CHECKPOINT_INTERVAL_SECS,
    ):
        self._connect = connect
        self._interval_secs = interval_secs
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-ckpt", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread after one last checkpoint (runs at shutdown)."""
        self._stopping.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        name_os_thread("sqlite-ckpt")
        # Connected at the first checkpoint, and again after a failed connect:
        # a database file gone for a while (an outage readiness reports) must
        # not end the thread and with it every later checkpoint.
        conn: sqlite3.Connection | None = None
        try:
            while True:
                stopping = self._stopping.wait(self._interval_secs)
                try:
                    conn = conn or self._connect()
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy, locked or gone: the next one catches up
                    log.debug("wal checkpoint skipped: %s", exc)
                if stopping:
                    return
        finally:
            if conn is not None:
                conn.close()
