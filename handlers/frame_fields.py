"""The envelope of a WebSocket frame: what its ``ref`` and ``type`` may hold,
and how a bad choice is described. Shared by the socket (``websocket.py``) and
the frames it hands on (``workflow.py``).
"""

from __future__ import annotations

from typing import Any

from handlers.validation import (
    MAX_INT,
    NOT_STRING,
    REQUIRED,
    integral,
    is_int,
    is_storable_text,
)

MAX_REF_CHARS = 64
BAD_REF = (
    f"Must be a string of at most {MAX_REF_CHARS} characters or an integer from 0 to {MAX_INT}."
)


def is_echoable_ref(ref: Any) -> bool:
    """A ``ref`` we can send back as it came, in JSON and in msgpack alike.

    An integer-valued number (``5.0``) is an integer here as in every field,
    and is echoed as it came (the client matches on what it sent).
    """
    if is_int(ref):
        return 0 <= ref <= MAX_INT
    if isinstance(ref, float):
        number = integral(ref)
        return number is not None and 0 <= number <= MAX_INT
    return is_storable_text(ref) and len(ref) <= MAX_REF_CHARS


def describe_bad_choice(kind: Any) -> str:
    """DRF's choice error, echoing the value only when it is short, clean text."""
    if kind is None:
        return REQUIRED
    if not isinstance(kind, str):
        return NOT_STRING
    if is_storable_text(kind) and len(kind) <= MAX_REF_CHARS:
        return f'"{kind}" is not a valid choice.'
    return "Not a valid choice."
