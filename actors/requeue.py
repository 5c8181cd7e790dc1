"""``RequeueSweeper``: stale claims go back to the queue (off by default).

A claimed session is stale when its holder has been offline for
``chat.requeue_offline_secs``, or when the store's last message has waited for
a reply for ``chat.requeue_unanswered_secs`` (counted from that message or from
the claim, whichever is later). Every process runs the sweep; that is safe
because the requeue itself is one guarded write that only succeeds if the
session is exactly as it was judged (same holder, no message, no claim or
transfer since) and, for an offline holder, the holder is still offline: of
several processes trying, one succeeds, and a reply or a reconnect in between
makes all of them fail. The write goes through the session's actor, so it is
also serialised with this process's own commands for that session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storage.workflow import StaleCutoffs

log = logging.getLogger(__name__)

# Stale claims handled per sweep; the next sweep takes the rest.
SWEEP_BATCH = 100


@dataclass(frozen=True)
class RequeueSettings:
    """When a claimed session goes back to the queue (0 turns a rule off)."""

    offline_secs: float = 0.0  # 0: an offline holder never loses its sessions
    unanswered_secs: float = 0.0  # 0: an unanswered session is never requeued
    sweep_secs: float = 5.0  # how often each process looks

    @property
    def enabled(self) -> bool:
        """Whether either rule is on."""
        return self.offline_secs > 0 or self.unanswered_secs > 0


class RequeueSweeper:
    """Puts stale claimed sessions back in the queue, on a timer."""

    def __init__(self, service: Any, settings: RequeueSettings, live_after: Callable[[], float]):
        self.service = service
        self.settings = settings
        self.live_after = live_after  # presence's expiry: who counts as online
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start sweeping if either rule is on (runs once, before serving)."""
        if self.settings.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop sweeping (graceful shutdown)."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def cutoffs(self) -> StaleCutoffs:
        """The cutoffs as of now: what counts as offline too long, or unanswered too long."""
        now, s = time.time(), self.settings
        return StaleCutoffs(
            offline_before=now - s.offline_secs if s.offline_secs > 0 else None,
            unanswered_before=(now - s.unanswered_secs if s.unanswered_secs > 0 else None),
            live_after=self.live_after(),
        )

    async def sweep(self) -> int:
        """One pass: requeue what is stale now; return how many this process did."""
        cutoffs = self.cutoffs()
        done = 0
        for stale in await self.service.storage.find_stale_claims(cutoffs, SWEEP_BATCH):
            if await self.service.requeue(stale, cutoffs):
                done += 1
                log.info(
                    "session %d requeued (%s, admin %d)",
                    stale.session_id,
                    stale.reason.value,
                    stale.admin_id,
                )
        return done

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_secs)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # storage down or an actor busy: next sweep
                log.warning("requeue sweep failed: %s", exc)
