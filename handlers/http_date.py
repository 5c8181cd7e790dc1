"""The ``Date`` header, formatted once a second rather than per response.

Tornado formats it with ``email.utils`` each time a handler's headers are
reset: once when the handler is made and again before an error is rendered,
about 2.5 µs each, and twice per refused claim in a claim storm. The header
has one-second resolution (RFC 9110 §5.6.7), so one string per second is the
same answer.
"""

from __future__ import annotations

import time

from tornado import httputil

_cached_second = -1
_cached_value = ""


def http_date() -> str:
    """The current time as an HTTP ``Date`` value (IMF-fixdate)."""
    global _cached_second, _cached_value
    now = int(time.time())
    if now != _cached_second:
        _cached_value = httputil.format_timestamp(now)
        _cached_second = now
    return _cached_value
