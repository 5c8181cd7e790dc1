"""``PresenceTracker``: this process's admin sockets, kept in storage as heartbeats.

An admin is online while any of its sockets is open on any process or node,
away when it says so, offline otherwise (API.md "Support workflow"). Each
process writes, per admin, how many sockets it has open (``admin_presence``
rows) and refreshes those rows every ``heartbeat_secs``; a row older than
``expiry_secs`` no longer counts, so the sockets of a SIGKILLed process stop
counting within ``expiry_secs`` without anyone cleaning up after it.

Changes are announced through the change feed as ``presence`` events, and
storage announces each change once (a conditional write on the admin's last
announced status), whichever process notices it: the process of the socket,
or any process's heartbeat for a node that died.

Writes for one admin are made one at a time, by one task, from the counts as
they are when the write starts: a burst of opens and closes ends in one
write with the final count.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from storage.base import ChatStorage

log = logging.getLogger(__name__)

# After a storage error, retry the pending writes after this long.
ERROR_BACKOFF_SECS = 1.0


@dataclass(frozen=True)
class PresenceSettings:
    """How presence is kept: how often rows are refreshed, and when a row stops counting."""

    # How often this process refreshes its rows (and looks for dead nodes).
    heartbeat_secs: float = 5.0
    # Rows older than this stop counting: three missed heartbeats.
    expiry_secs: float = 15.0


def node_id() -> str:
    """This process's name in presence rows: unique per run, readable in a dump."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class PresenceTracker:
    """Keeps this process's admins' presence in storage (sockets per admin, heartbeats) and
    announces changes."""

    def __init__(
        self,
        storage: ChatStorage,
        settings: PresenceSettings,
        on_stored: Callable[[], None] = lambda: None,
        node: str | None = None,
    ):
        self.storage = storage
        self.settings = settings
        self.on_stored = on_stored
        self.node = node or node_id()
        self._sockets: collections.Counter[int] = collections.Counter()
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def live_after(self) -> float:
        """Rows refreshed before this moment no longer count."""
        return time.time() - self.settings.expiry_secs

    async def start(self) -> None:
        """Start the writer and the heartbeat (runs once, before serving)."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write_changes()), loop.create_task(self._heartbeat())]

    async def stop(self) -> None:
        """Graceful stop: this node's sockets stop counting at once, and other
        processes announce who went offline (runs after the sockets are
        closed, before storage closes)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._sockets.clear()
        try:  # a heartbeat with no sockets: every row of this node to zero
            await self.storage.heartbeat_presence(self.node, {}, self.live_after())
        except Exception as exc:  # storage down: the rows expire on their own
            log.warning("presence: could not clear this node's rows at stop: %s", exc)

    # --- called by the admin WebSocket ------------------------------------------
    def socket_opened(self, admin_id: int) -> None:
        """Runs when an admin's socket has authenticated."""
        self._sockets[admin_id] += 1
        self._mark(admin_id)

    def socket_closed(self, admin_id: int) -> None:
        """Runs when an authenticated admin socket closes, for whatever reason."""
        self._sockets[admin_id] -= 1
        if self._sockets[admin_id] <= 0:
            del self._sockets[admin_id]
        self._mark(admin_id)

    async def set_away(self, admin_id: int, away: bool) -> None:
        """The admin's ``presence`` frame: away, or back online."""
        if await self.storage.set_admin_away(admin_id, away, self.live_after()):
            self.on_stored()

    def _mark(self, admin_id: int) -> None:
        self._dirty.add(admin_id)
        self._wake.set()

    # --- background -----------------------------------------------------------
    async def _write_changes(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                admin_id = self._dirty.pop()
                try:
                    changed = await self.storage.set_presence_sockets(
                        self.node, admin_id, self._sockets.get(admin_id, 0), self.live_after()
                    )
                except asyncio.CancelledError:
                    self._dirty.add(admin_id)
                    raise
                except Exception as exc:
                    log.warning("presence write failed: %s", exc)
                    self._dirty.add(admin_id)
                    await asyncio.sleep(ERROR_BACKOFF_SECS)
                    continue
                if changed:
                    self.on_stored()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_secs)
            try:
                if await self.storage.heartbeat_presence(
                    self.node, dict(self._sockets), self.live_after()
                ):
                    self.on_stored()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("presence heartbeat failed: %s", exc)
