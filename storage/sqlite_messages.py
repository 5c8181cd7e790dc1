"""The SQLite backend's messages: posts stored a group at a time
(``sqlite_posts``), and a session's history."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from storage import sqlite_schema as schema
from storage.base import Reply
from storage.errors import StorageUnavailable
from storage.outcomes import (
    PostResult,
)
from storage.records import (
    Message,
)
from storage.sqlite_connection import SQLiteConnection
from storage.sqlite_posts import Post, store_posts


class SQLiteMessages(SQLiteConnection):
    """Messages on SQLite (``ChatStorage``'s message methods)."""

    # --- messages -------------------------------------------------------
    async def post_admin_message(
        self, session_id: int, admin_id: int, body: str, client_id: str | None
    ) -> PostResult:
        """``ChatStorage.post_admin_message``: stored with the group's other posts
        (``sqlite_posts``)."""
        return await self._post(Post("admin", admin_id, session_id, body, client_id))

    async def post_store_message(
        self, store_id: int, body: str, client_id: str | None
    ) -> PostResult:
        """``ChatStorage.post_store_message``: stored with the group's other posts
        (``sqlite_posts``)."""
        return await self._post(Post("store", store_id, None, body, client_id))

    async def _post(self, post: Post) -> PostResult:
        # Posts waiting for the same group are stored together (sqlite_posts).
        return await self._write_batched(store_posts, post)

    # The same two posts answered by a callback, for the message path
    # (``SessionActor.start_now``): no future or coroutine per message.
    def post_admin_message_with_reply(
        self, session_id: int, admin_id: int, body: str, client_id: str | None, reply: Reply
    ) -> None:
        """``post_admin_message`` answered by ``reply(result, error)`` on the loop once
        committed."""
        self._post_with_reply(Post("admin", admin_id, session_id, body, client_id), reply)

    def post_store_message_with_reply(
        self, store_id: int, body: str, client_id: str | None, reply: Reply
    ) -> None:
        """``post_store_message`` answered by ``reply(result, error)`` on the loop once
        committed."""
        self._post_with_reply(Post("store", store_id, None, body, client_id), reply)

    def _post_with_reply(self, post: Post, reply: Reply) -> None:
        def answer(result: Any, exc: BaseException | None) -> None:
            if isinstance(exc, sqlite3.OperationalError):
                exc = StorageUnavailable(str(exc))
            reply(result, exc)

        if self._writer is None:
            asyncio.get_running_loop().call_soon(
                reply, None, StorageUnavailable("storage is closed")
            )
            return
        self._writer.submit_batched_with_reply(store_posts, post, answer)

    async def list_messages(self, session_id: int, after_seq: int, limit: int) -> list[Message]:
        """``ChatStorage.list_messages``: a session's messages after ``after_seq``, in ``seq``
        order."""
        return await self._read(
            lambda c: [
                schema.row_to_message(r)
                for r in c.execute(
                    "SELECT * FROM messages WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (session_id, after_seq, limit),
                )
            ]
        )
