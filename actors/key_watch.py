"""``KeyWatch``: closes this process's sockets whose key was rotated or revoked.

A key changed by ``server.py rotate-key`` or ``revoke-key`` (another process,
often on another host) stops authenticating at once, because every request and
auth frame reads storage. Sockets already open were authenticated before the
change, so each server process follows storage's ``key_changes`` and closes the
account's sockets with 4001 through the hub. Polling is cheap (one indexed read
of an almost always empty range) and bounds the delay by the interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from actors.hub import Hub
from storage.base import ChatStorage
from storage.records import Role

log = logging.getLogger(__name__)

# How often to look for key changes: a revoked key's sockets close within this
# (plus one read), well inside the one second API.md promises.
KEY_POLL_INTERVAL_SECS = 0.3
# After a storage error, wait this long before reading again.
ERROR_BACKOFF_SECS = 1.0
# A socket whose auth read a key just before its revocation committed joins
# the hub just after the watcher acted; revoked accounts are swept again for
# this long. (Not after a rotation: the account's new key is valid then.)
REVOKED_SWEEP_SECS = 2.0
CLOSE_REASON = "API key revoked or rotated."


class KeyWatch:
    """Follows storage's key changes and closes the sockets opened with a key that was rotated or
    revoked, in every process."""

    def __init__(
        self,
        storage: ChatStorage,
        hub: Hub,
        close_code: int,
        interval_secs: float = KEY_POLL_INTERVAL_SECS,
    ):
        self.storage = storage
        self.hub = hub
        self.close_code = close_code  # handlers/errors.py's code for a bad key
        self.interval_secs = interval_secs
        self.position = None  # in storage's key changes: opaque, set by start
        self._revoked: dict[tuple[Role, int], float] = {}  # account -> sweep until
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start after the newest change (runs once, before serving): sockets
        opened from now on authenticate against the current keys."""
        self.position = await self.storage.key_changes_head()
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        """Stop following (graceful shutdown, before the sockets are closed)."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> int:
        """Close the sockets of every account whose key changed since the last
        check; return how many sockets were closed."""
        closed = 0
        now = time.monotonic()
        changed = set()
        for change in await self.storage.key_changes_since(self.position):
            self.position = change.position
            account = (change.role, change.account_id)
            changed.add(account)
            if change.kind == "revoked":
                self._revoked[account] = now + REVOKED_SWEEP_SECS
            else:
                self._revoked.pop(account, None)
            count = self.hub.close_principal(*account, self.close_code, CLOSE_REASON)
            if count:
                log.info(
                    "key of %s %d %s: closed %d socket(s)",
                    change.role.value,
                    change.account_id,
                    change.kind,
                    count,
                )
            closed += count
        for account, until in list(self._revoked.items()):
            if until < now:
                del self._revoked[account]
            elif account not in changed:
                closed += self.hub.close_principal(*account, self.close_code, CLOSE_REASON)
        return closed

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.interval_secs)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # storage outage: keep watching, say so
                log.warning("reading key changes failed: %s", exc)
                await asyncio.sleep(ERROR_BACKOFF_SECS)
