"""An asyncio face on mongomock, so ``MongoStorage`` can run against it.

mongomock is a stand-in for MongoDB's query semantics (filters, updates,
unique and partial indexes), not a MongoDB server: nothing here says anything
about replication, write concern or real concurrency. The calls run
synchronously inside each coroutine; only the awaitable shape is added.
"""

from __future__ import annotations

from typing import Any

import mongomock


class AsyncCursor:
    def __init__(self, cursor: Any):
        self._cursor = cursor

    def sort(self, *args: Any, **kwargs: Any) -> AsyncCursor:
        self._cursor = self._cursor.sort(*args, **kwargs)
        return self

    def limit(self, n: int) -> AsyncCursor:
        self._cursor = self._cursor.limit(n)
        return self

    async def to_list(self, length: int | None = None) -> list[dict]:
        docs = list(self._cursor)
        return docs if length is None else docs[:length]


class AsyncCollection:
    def __init__(self, collection: Any):
        self._collection = collection

    def find(self, *args: Any, **kwargs: Any) -> AsyncCursor:
        return AsyncCursor(self._collection.find(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._collection, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


class AsyncDatabase:
    def __init__(self, name: str = "chat"):
        self._db = mongomock.MongoClient().get_database(name)

    def __getattr__(self, name: str) -> AsyncCollection:
        return AsyncCollection(self._db.get_collection(name))

    async def command(self, name: str) -> dict:
        return {"ok": 1.0}
