"""Storage backends, chosen by URL: ``sqlite:///path`` or ``mongodb://...``."""

from __future__ import annotations

from typing import Any

from storage.base import ChatStorage
from storage.sqlite_schema import DEFAULT_PAGE_SIZE


def open_storage(url: str, options: dict[str, Any] | None = None) -> ChatStorage:
    """A backend for ``url`` (not yet set up: call ``await storage.setup()``)."""
    options = options or {}
    if url.startswith("sqlite:///"):
        from storage.sqlite import SQLiteStorage

        return SQLiteStorage.from_url(
            url,
            synchronous=options.get("sqlite_synchronous", "FULL"),
            page_size=int(options.get("sqlite_page_size", DEFAULT_PAGE_SIZE)),
        )
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from storage.mongo import MongoStorage

        return MongoStorage.from_url(
            url,
            write_concern=options.get("mongo_write_concern", "majority"),
            retry_writes=bool(options.get("mongo_retry_writes", True)),
            timeout_ms=int(options.get("mongo_timeout_ms", 5000)),
        )
    raise ValueError(f"unsupported storage URL {url!r}: use sqlite:///... or mongodb://...")
