"""Read deadlines: a request's headers and body must arrive in time.

Tornado enforces ``header_timeout`` and ``body_timeout`` by wrapping each read
of each request in ``gen.with_timeout``: a timer started and cancelled, a task
for the body read and chained futures, twice per request (about a tenth of the
loop's time per request in the claim storm). ``ReadDeadline`` keeps the same
two limits with one lazy timer per connection instead: a request only moves
the connection's deadline; the timer, when it fires, closes the connection if
the deadline has passed and otherwise sleeps until the new one. A connection
busy with requests costs one timer wake-up per timeout period, not two timers
per request.

As with Tornado's timeouts, the header clock starts when the connection waits
for a request (so it also closes idle keep-alive connections), the body clock
when the headers have arrived; a read that misses its deadline closes the
connection, at most one timer tick after the deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tornado import httputil

log = logging.getLogger(__name__)


class ReadDeadline:
    """The deadline of one connection's current read (headers, or a body)."""

    def __init__(self, header_secs: float | None, body_secs: float | None):
        self.header_secs = header_secs
        self.body_secs = body_secs
        self.loop = asyncio.get_running_loop()
        self.deadline: float | None = None
        self.phase = ""
        self.request_conn: Any = None
        self._timer: asyncio.TimerHandle | None = None

    def watch(
        self, request_conn: Any, delegate: httputil.HTTPMessageDelegate
    ) -> httputil.HTTPMessageDelegate:
        """Runs when the connection starts waiting for a request's headers."""
        self.request_conn = request_conn
        self._arm("headers", self.header_secs)
        return _TimedDelegate(self, delegate)

    def _arm(self, phase: str, secs: float | None) -> None:
        if secs is None:
            self.deadline = None
            return
        self.phase = phase
        self.deadline = self.loop.time() + secs
        if self._timer is None:
            self._timer = self.loop.call_at(self.deadline, self._check)

    def _check(self) -> None:
        """Runs when the timer fires: cut the connection off, or sleep on."""
        self._timer = None
        if self.deadline is None:
            return  # nothing is being read; the next request re-arms
        if self.loop.time() < self.deadline:
            self._timer = self.loop.call_at(self.deadline, self._check)
            return
        # As Tornado: a body that stops arriving is worth a line, an idle
        # keep-alive connection closing is not.
        log.log(
            logging.INFO if self.phase == "body" else logging.DEBUG,
            "timeout reading the %s of a request from %s",
            self.phase,
            getattr(self.request_conn, "context", "?"),
        )
        self.deadline = None
        self.request_conn.close()

    def stop(self) -> None:
        """Runs when the connection has closed."""
        self.deadline = None
        self.request_conn = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _TimedDelegate(httputil.HTTPMessageDelegate):
    """Passes one request through, moving its connection's deadline: the body's
    once the headers are in, none once the request has been read."""

    def __init__(self, deadline: ReadDeadline, delegate: httputil.HTTPMessageDelegate):
        self.deadline = deadline
        self.delegate = delegate

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        self.deadline._arm("body", self.deadline.body_secs)
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.deadline.deadline = None
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self.deadline.deadline = None
        self.delegate.on_connection_close()
