"""A WebSocket's keepalive: a ping every ``ping_interval``, the connection
closed when the pong does not come within ``ping_timeout``. One timer per
connection, no task.

``FramedConnection`` (``handlers/ws_protocol.py``) mixes this in: it starts
the pings once the socket is open, stops them when it closes, and clears
``_pong_due`` when a pong frame arrives.
"""

from __future__ import annotations

import asyncio

from tornado.websocket import WebSocketProtocol, _WebSocketParams


class Keepalive(WebSocketProtocol):
    """The pinging side of a connection (``write_ping`` and ``close`` are the
    connection's own)."""

    params: _WebSocketParams  # the connection's: ping_interval, ping_timeout

    def keep_alive_init(self) -> None:
        """Runs when the connection is made (its ``__init__``): nothing pinged yet."""
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_due = False

    def start_pinging(self) -> None:
        """Runs once the socket is open: ping every ``ping_interval`` if one is set."""
        interval = self.params.ping_interval or 0
        if interval > 0:
            self._ping_timer = asyncio.get_running_loop().call_later(interval, self._send_ping)

    def _send_ping(self) -> None:
        """Runs every ping interval: ping, and check for the pong after the timeout."""
        interval = self.params.ping_interval or 0
        timeout = min(self.params.ping_timeout or interval, interval)
        self._pong_due = True
        self.write_ping(b"")
        self._ping_timer = asyncio.get_running_loop().call_later(
            timeout, self._check_pong, interval - timeout
        )

    def _check_pong(self, until_next: float) -> None:
        if self._pong_due:
            self.close(reason="ping timed out")
            return
        self._ping_timer = asyncio.get_running_loop().call_later(until_next, self._send_ping)

    def _stop_pinging(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
