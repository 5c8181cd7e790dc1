"""``EventFeed``: follows storage's change feed and hands events to the hub.

Every process learns what was stored, by itself or by any other process or
node, from the same feed, in commit order; that single path is what keeps each
session's events in order for every client. The process that wrote an event
``poke``s the feed so it is read at once instead of at the next poll.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from storage.base import ChatStorage, Event

log = logging.getLogger(__name__)

FEED_BATCH = 500
# Entries older than this are dropped; a client away longer resumes from history.
FEED_RETENTION_SECS = 3600.0
PRUNE_INTERVAL_SECS = 60.0
# After a storage error, wait this long before reading again.
ERROR_BACKOFF_SECS = 1.0


class EventFeed:
    def __init__(self, storage: ChatStorage, deliver: Callable[[Event], None],
                 poll_interval_secs: float = 0.02):
        self.storage = storage
        self.deliver = deliver
        self.poll_interval_secs = poll_interval_secs
        self.last_id = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None
        self._pruned_at = 0.0

    async def start(self) -> None:
        """Start after the newest stored event (runs once, before serving)."""
        self.last_id = await self.storage.last_event_id()
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._follow())
        watch = getattr(self.storage, "watch_event_inserts", None)
        if watch is not None:  # a backend that can push: poll only as a fallback
            self._watcher = loop.create_task(self._watch(watch))

    async def _watch(self, watch: Callable) -> None:
        try:
            if not await watch(self.poke):
                log.info("change streams unavailable; reading the feed by polling")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("change stream ended (%s); reading the feed by polling", exc)

    def poke(self) -> None:
        """Read the feed now: this process just stored something."""
        self._wake.set()

    async def catch_up(self) -> None:
        """Deliver everything stored so far (graceful stop, before sockets close)."""
        while await self._read_batch() == FEED_BATCH:
            pass

    async def stop(self) -> None:
        for task in (self._watcher, self._task):
            if task:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_secs)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                while await self._read_batch() == FEED_BATCH:
                    pass
                if loop.time() - self._pruned_at > PRUNE_INTERVAL_SECS:
                    self._pruned_at = loop.time()
                    await self.storage.prune_events(FEED_RETENTION_SECS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event feed read failed: %s", exc)
                await asyncio.sleep(ERROR_BACKOFF_SECS)

    async def _read_batch(self) -> int:
        events = await self.storage.read_events(self.last_id, FEED_BATCH)
        for event in events:
            self.last_id = event.id
            try:
                self.deliver(event)
            except Exception:
                log.exception("delivering event %s failed", event.id)
        return len(events)
