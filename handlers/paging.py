"""Cursor paging for the session lists and page parameters for histories."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

from actors.errors import NotFound
from handlers.validation import query_int
from storage.base import MAX_HISTORY_PAGE, MAX_LIST_PAGE, Session

DEFAULT_LIST_LIMIT = 50
DEFAULT_HISTORY_LIMIT = 100


def list_limit(handler: Any) -> int:
    return query_int(handler.get_query_argument("limit", None), "limit",
                     DEFAULT_LIST_LIMIT, 1, MAX_LIST_PAGE)


def history_window(handler: Any) -> tuple[int, int]:
    """``(after_seq, limit)`` from the query string."""
    after_seq = query_int(handler.get_query_argument("after_seq", None), "after_seq",
                          0, 0, 2**62)
    limit = query_int(handler.get_query_argument("limit", None), "limit",
                      DEFAULT_HISTORY_LIMIT, 1, MAX_HISTORY_PAGE)
    return after_seq, limit


def decode_cursor(handler: Any) -> tuple[str, int] | None:
    """The position a ``next`` URL carries: the sort key of the last row sent.

    Positions, not offsets, so a queue that moves while a client pages neither
    skips nor repeats a session.
    """
    raw = handler.get_query_argument("cursor", None)
    if not raw:
        return None
    try:
        stamp, session_id = json.loads(base64.urlsafe_b64decode(raw.encode()))
        if not isinstance(stamp, str) or not isinstance(session_id, int):
            raise ValueError
    except (ValueError, TypeError):
        raise NotFound() from None  # DRF's CursorPagination: 404 "Invalid cursor"
    return stamp, session_id


def next_url(handler: Any, rows: list[Session], limit: int, sort_field: str) -> str | None:
    """The URL of the page after ``rows``, or None when ``rows`` is the last page."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    cursor = base64.urlsafe_b64encode(
        json.dumps([getattr(last, sort_field), last.id]).encode()).decode()
    request = handler.request
    query = urllib.parse.urlencode({"limit": limit, "cursor": cursor})
    return f"{request.protocol}://{request.host}{request.path}?{query}"
