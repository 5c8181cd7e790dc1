"""Storage backends, chosen by URL: ``sqlite:///path`` or ``mongodb://...``."""

from __future__ import annotations

from typing import Any

from storage.base import ChatStorage


def open_storage(url: str, options: dict[str, Any] | None = None) -> ChatStorage:
    """A backend for ``url`` (not yet set up: call ``await storage.setup()``)."""
    options = options or {}
    if url.startswith("sqlite:///"):
        from storage.sqlite import SQLiteStorage

        return SQLiteStorage.from_url(url, synchronous=options.get("sqlite_synchronous", "FULL"))
    if url.startswith(("mongodb://", "mongodb+srv://", "mongomock://")):
        from storage.mongo import MongoStorage

        return MongoStorage.from_url(url, **{k[len("mongo_"):]: v for k, v in options.items()
                                             if k.startswith("mongo_")})
    raise ValueError(f"unsupported storage URL {url!r}: use sqlite:///... or mongodb://...")
