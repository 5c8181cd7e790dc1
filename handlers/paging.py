"""Cursor paging for the session lists and page parameters for histories."""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.parse
from typing import Any

from actors.errors import Invalid, NotFound
from handlers.validation import MAX_INT, decode_json, is_int, is_storable_text, query_int
from storage.base import MAX_HISTORY_PAGE, MAX_LIST_PAGE
from storage.records import Session

DEFAULT_LIST_LIMIT = 50
DEFAULT_HISTORY_LIMIT = 100


def list_limit(handler: Any) -> int:
    """The ``limit`` query argument, within the API's bounds (400 if it is not a number)."""
    return query_int(
        raw_query_argument(handler, "limit"), "limit", DEFAULT_LIST_LIMIT, 1, clamp_to=MAX_LIST_PAGE
    )


def history_window(handler: Any) -> tuple[int, int]:
    """``(after_seq, limit)`` from the query string."""
    after_seq = query_int(raw_query_argument(handler, "after_seq"), "after_seq", 0, 0)
    limit = query_int(
        raw_query_argument(handler, "limit"),
        "limit",
        DEFAULT_HISTORY_LIMIT,
        1,
        clamp_to=MAX_HISTORY_PAGE,
    )
    return after_seq, limit


def raw_query_argument(handler: Any, name: str) -> str | None:
    """The parameter's last value as sent: Tornado strips spaces by default,
    which would make ``limit=%20`` read as an absent ``limit``."""
    return handler.get_query_argument(name, None, strip=False)


def decode_cursor(handler: Any) -> tuple[str, int] | None:
    """The position a ``next`` URL carries: the sort key of the last row sent.

    Positions, not offsets, so a queue that moves while a client pages neither
    skips nor repeats a session.
    """
    raw = handler.get_query_argument("cursor", None)
    if not raw:
        return None
    position = _parse_cursor(raw)
    if position is None:
        raise NotFound()  # DRF's CursorPagination: 404 "Invalid cursor"
    return position


# The sort keys are our own timestamps (storage.records.utc_now_iso).
_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z\Z")
# A cursor we made is ~60 characters; anything much longer is not ours.
MAX_CURSOR_CHARS = 200


def _parse_cursor(raw: str) -> tuple[str, int] | None:
    """Exactly what ``next_url`` encodes, or None: strict base64url of a JSON
    ``[timestamp, id]`` with the id in range."""
    if len(raw) > MAX_CURSOR_CHARS or not raw.isascii():
        return None
    try:
        decoded = base64.b64decode(raw.encode(), altchars=b"-_", validate=True)
        position = decode_json(decoded)
    except (binascii.Error, ValueError, Invalid):
        return None
    if not (isinstance(position, list) and len(position) == 2):
        return None
    stamp, session_id = position
    if not (
        is_storable_text(stamp)
        and _STAMP.match(stamp)
        and is_int(session_id)
        and 1 <= session_id <= MAX_INT
    ):
        return None
    return stamp, session_id


def next_url(handler: Any, rows: list[Session], limit: int, sort_field: str) -> str | None:
    """The URL of the page after ``rows``, or None when ``rows`` is the last page."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    cursor = base64.urlsafe_b64encode(
        json.dumps([getattr(last, sort_field), last.id]).encode()
    ).decode()
    request = handler.request
    query = urllib.parse.urlencode({"limit": limit, "cursor": cursor})
    return f"{request.protocol}://{request.host}{request.path}?{query}"
