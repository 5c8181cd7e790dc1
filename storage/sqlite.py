"""The embedded default backend: one SQLite file in WAL mode.

Writes go through ``GroupCommitWriter`` (one write connection per process, one
transaction per group, each write atomic under SQLite's write lock); reads use
a small pool of reader threads with their own connections, which WAL lets run
beside the writer. Several server processes may share one file: the write lock
serialises them, and the guards below are single statements or run inside one
``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

from typing import Any

from storage import sqlite_webhooks as delivery
from storage import sqlite_workflow as flow
from storage.outcomes import (
    SessionWrite,
)
from storage.sqlite_accounts import SQLiteAccounts
from storage.sqlite_connection import SQLiteConnection
from storage.sqlite_feed import SQLiteFeed
from storage.sqlite_messages import SQLiteMessages
from storage.sqlite_sessions import SQLiteSessions
from storage.workflow import (
    AdminPresence,
    OutboxEntry,
    ReadResult,
    StaleClaim,
    StaleCutoffs,
    TransferResult,
)


class SQLiteStorage(SQLiteAccounts, SQLiteSessions, SQLiteMessages, SQLiteFeed, SQLiteConnection):
    """``ChatStorage`` over one SQLite file: the concept modules' methods, and
    the support workflow's (``sqlite_workflow``)."""

    # Writes of one kind (session changes; message posts) reach the database
    # in the order they were submitted: one writer thread, FIFO, each group's
    # items in order. The session actor relies on it to overlap commands.
    writes_in_submission_order = True

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStorage:
        """``sqlite:///relative/path.sqlite3`` or ``sqlite:////absolute/path``."""
        path = url[len("sqlite:///") :]
        if not path:
            raise ValueError(f"no file in storage URL {url!r}")
        return cls(path, **options)

    # --- the support workflow (storage/workflow.py states the rules) -------------
    async def transfer_session(
        self, session_id: int, admin_id: int, target_id: int, max_sessions: int
    ) -> TransferResult:
        """``ChatStorage.transfer_session``: one write through
        ``sqlite_workflow.transfer_write``."""
        return await self._write(
            lambda c: flow.transfer_write(c, session_id, admin_id, target_id, max_sessions)
        )

    async def mark_read(self, session_id: int, side: str, reader_id: int, seq: int) -> ReadResult:
        """``ChatStorage.mark_read``: one write through ``sqlite_workflow.mark_read_write``."""
        return await self._write(
            lambda c: flow.mark_read_write(c, session_id, side, reader_id, seq)
        )

    async def unread_counts(self, session_ids: list[int], side: str) -> dict[int, int]:
        """``ChatStorage.unread_counts``: one read through ``sqlite_workflow.unread_counts``."""
        return await self._read(lambda c: flow.unread_counts(c, session_ids, side))

    async def read_positions(self, session_id: int) -> dict[str, int]:
        """``ChatStorage.read_positions``: one read through ``sqlite_workflow.read_positions``."""
        return await self._read(lambda c: flow.read_positions(c, session_id))

    async def set_presence_sockets(
        self, node: str, admin_id: int, sockets: int, live_after: float
    ) -> str | None:
        """``ChatStorage.set_presence_sockets``: one write through
        ``sqlite_workflow.set_sockets_write``."""
        return await self._write(
            lambda c: flow.set_sockets_write(c, node, admin_id, sockets, live_after)
        )

    async def set_admin_away(self, admin_id: int, away: bool, live_after: float) -> str | None:
        """``ChatStorage.set_admin_away``: one write through ``sqlite_workflow.set_away_write``."""
        return await self._write(lambda c: flow.set_away_write(c, admin_id, away, live_after))

    async def heartbeat_presence(
        self, node: str, sockets: dict[int, int], live_after: float
    ) -> list[tuple[int, str]]:
        """``ChatStorage.heartbeat_presence``: one write through
        ``sqlite_workflow.heartbeat_write``."""
        return await self._write(lambda c: flow.heartbeat_write(c, node, dict(sockets), live_after))

    async def list_admins_with_presence(
        self, limit: int, after_id: int, live_after: float
    ) -> list[AdminPresence]:
        """``ChatStorage.list_admins_with_presence``: one read through
        ``sqlite_workflow.list_admins_with_presence``."""
        return await self._read(
            lambda c: flow.list_admins_with_presence(c, limit, after_id, live_after)
        )

    async def find_stale_claims(self, cutoffs: StaleCutoffs, limit: int) -> list[StaleClaim]:
        """``ChatStorage.find_stale_claims``: one read through
        ``sqlite_workflow.find_stale_claims``."""
        return await self._read(lambda c: flow.find_stale_claims(c, cutoffs, limit))

    async def requeue_session(self, stale: StaleClaim, cutoffs: StaleCutoffs) -> SessionWrite:
        """``ChatStorage.requeue_session``: one write through ``sqlite_workflow.requeue_write``."""
        return await self._write(lambda c: flow.requeue_write(c, stale, cutoffs))

    async def set_webhook_outbox(self, kinds: tuple[str, ...]) -> None:
        """``ChatStorage.set_webhook_outbox``: one write through
        ``sqlite_webhooks.set_outbox_trigger``."""
        await self._write(lambda c: delivery.set_outbox_trigger(c, kinds))

    async def read_outbox(self, after_id: int, limit: int) -> list[OutboxEntry]:
        """``ChatStorage.read_outbox``: one read through ``sqlite_webhooks.read_outbox``."""
        return await self._read(lambda c: delivery.read_outbox(c, after_id, limit))

    async def load_webhook_cursor(self, hook: str) -> int:
        """``ChatStorage.load_webhook_cursor``: one read of the ``webhook_cursors`` row."""
        row = await self._read(
            lambda c: c.execute(
                "SELECT last_id FROM webhook_cursors WHERE hook = ?", (hook,)
            ).fetchone()
        )
        return row[0] if row else 0

    async def save_webhook_cursor(self, hook: str, last_id: int) -> None:
        """``ChatStorage.save_webhook_cursor``: one write through
        ``sqlite_webhooks.advance_cursor_write``."""
        await self._write(lambda c: delivery.advance_cursor_write(c, hook, last_id))

    async def prune_outbox(self, hooks: tuple[str, ...]) -> int:
        """``ChatStorage.prune_outbox``: one write through
        ``sqlite_webhooks.prune_outbox_write``."""
        return await self._write(lambda c: delivery.prune_outbox_write(c, hooks))

    async def take_lease(self, name: str, holder: str, duration_secs: float) -> bool:
        """``ChatStorage.take_lease``: one write through ``sqlite_webhooks.take_lease_write``."""
        return await self._write(
            lambda c: delivery.take_lease_write(c, name, holder, duration_secs)
        )
