"""``IdBlocks``: integer ids for MongoDB documents without a shared counter in any change.

The API shows integer ids (sessions, messages, accounts, events), so they
cannot be ObjectIds. Numbering them from one counter document ``$inc``-ed
inside every change's transaction made that document the whole cluster's
bottleneck: every two changes conflicted on it, and a node killed mid-change
left its transaction holding the counter's write lock until the server reaped
it (60 s by default), stalling every other node's writes.

Instead each process reserves a **block** of ids per kind (hi/lo): one
``$inc`` of the block size on ``counters.<kind>``, with the client's write
concern (``majority`` by default), outside any transaction, and then hands the
block's ids out locally. The rules:

* ids are unique across processes and nodes: two reservations never get the
  same block, because the ``$inc`` is atomic and acknowledged before use;
* ids are not gap-free nor in commit order: a process that stops (or crashes)
  leaves the rest of its block unused, and two nodes interleave blocks. Nothing
  orders by id across nodes (the feed follows the oplog; ``seq`` orders a
  session's messages and lives in the session document);
* a transaction that retries takes new ids: the old ones are simply unused.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from storage.errors import StorageUnavailable

# Ids per reservation, by kind. Big enough that the reservation's round trip
# is paid once per this many changes on the hot kinds; small where a crash's
# unused ids would show (accounts are created rarely and listed by id).
BLOCK_SIZES = {
    "messages": 200,
    "events": 400,
    "sessions": 50,
    "webhook_outbox": 200,
    "key_changes": 10,
    "admins": 5,
    "stores": 20,
}
DEFAULT_BLOCK_SIZE = 50
# A first-time upsert racing another can return None (seen on a wire-protocol
# server); it is simply tried again.
RESERVE_ATTEMPTS = 3


class IdBlocks:
    """Hands out ids from blocks this process reserved in ``counters``."""

    def __init__(self, counters: Any):
        self.counters = counters
        # kind -> [next id to hand out, last id of the block]
        self._blocks: dict[str, list[int]] = {}
        self._refills: dict[str, asyncio.Lock] = {}

    async def next(self, kind: str) -> int:
        """A fresh id of ``kind``. Runs on every insert that needs one; costs a
        round trip (outside any transaction) only when the block is used up."""
        block = self._blocks.get(kind)
        if block is None or block[0] > block[1]:
            lock = self._refills.setdefault(kind, asyncio.Lock())
            async with lock:  # one reservation at a time per kind
                block = self._blocks.get(kind)
                if block is None or block[0] > block[1]:
                    block = self._blocks[kind] = await self._reserve(kind)
        value = block[0]
        block[0] += 1
        return value

    async def _reserve(self, kind: str) -> list[int]:
        size = BLOCK_SIZES.get(kind, DEFAULT_BLOCK_SIZE)
        for _attempt in range(RESERVE_ATTEMPTS):
            try:
                # No session argument: never part of the caller's transaction.
                doc = await self.counters.find_one_and_update(
                    {"_id": kind},
                    {"$inc": {"value": size}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue  # another process created the counter at the same moment
            if doc is not None:
                return [doc["value"] - size + 1, doc["value"]]
        raise StorageUnavailable(f"reserving {kind} ids returned nothing; try again")
