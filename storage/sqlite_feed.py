"""The SQLite backend's change feed: events in commit order (an event id is
a feed position), this process's own events, and each node's saved position."""

from __future__ import annotations

import time

from storage import sqlite_schema as schema
from storage.group_commit import CommitListener
from storage.records import (
    Event,
    Session,
)
from storage.sqlite_connection import SQLiteConnection


class SQLiteFeed(SQLiteConnection):
    """The change feed on SQLite (``ChatStorage``'s feed methods)."""

    # --- change feed ----------------------------------------------------
    async def append_typing(self, session: Session, sender: str) -> None:
        """``ChatStorage.append_typing``: one ``typing`` event."""
        await self._write(
            lambda c: schema.insert_event(
                c, "typing", session, session.admin_id, {"session_id": session.id, "sender": sender}
            )
        )

    # A feed position here is an event id: ids are given in commit order by
    # the one writer at a time SQLite allows.
    async def feed_head(self) -> int:
        """``ChatStorage.feed_head``: the newest event id (0: none)."""
        return await self._read(
            lambda c: c.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        )

    async def read_events(self, after_id: int, limit: int) -> list[Event]:
        """``ChatStorage.read_events``: events after ``after_id``, in id (commit) order."""
        rows = await self._read(
            lambda c: c.execute(
                f"{schema.EVENTS_SELECT} WHERE e.id > ? ORDER BY e.id LIMIT ?", (after_id, limit)
            ).fetchall()
        )
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
        rows = await self._read(
            lambda c: c.execute(
                f"{schema.EVENTS_SELECT} WHERE e.id > ? AND e.origin IS NOT ?"
                " ORDER BY e.id LIMIT ?",
                (after_id, self.origin, limit),
            ).fetchall()
        )
        return [schema.row_to_event(r) for r in rows]

    async def prune_events(self, older_than_secs: float) -> int:
        """``ChatStorage.prune_events``: delete events older than ``older_than_secs``; return how
        many."""
        cutoff = time.time() - older_than_secs
        return await self._write(
            lambda c: c.execute("DELETE FROM events WHERE created < ?", (cutoff,)).rowcount
        )

    async def load_feed_position(self, node: str) -> int | None:
        """``ChatStorage.load_feed_position``: the last event id ``node`` took, or None."""
        row = await self._read(
            lambda c: c.execute(
                "SELECT last_id FROM feed_positions WHERE node = ?", (node,)
            ).fetchone()
        )
        return row[0] if row else None

    async def save_feed_position(self, node: str, last_id: int) -> None:
        """``ChatStorage.save_feed_position``: upsert ``node``'s last event id."""
        await self._write(
            lambda c: c.execute(
                "INSERT INTO feed_positions (node, last_id) VALUES (?, ?)"
                " ON CONFLICT (node) DO UPDATE SET last_id = excluded.last_id",
                (node, last_id),
            )
        )
