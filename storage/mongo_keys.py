"""``KeyCache``: this process's memory of which principal a REST key's digest names.

Every REST request authenticates its key, and on MongoDB each lookup is a
round trip (a find on ``stores``, then on ``admins``): one command more per
message for the database server to run. Keys change only through
``rotate_key`` / ``revoke_key``, which announce the change in ``key_changes``
in the same transaction (``storage/mongo_accounts.py``), and every node
follows that collection's inserts with a change stream. So a node may
remember digest -> principal as long as it sees every key change:

* an entry is used only while the ``key_changes`` stream is open and caught
  up (``InsertFollower.following``); every key change it reads, and every end
  of the stream, empties the cache. A rotated or revoked key is therefore
  refused on a node as soon as that node's stream has read the change (the
  same moment its ``KeyWatch`` closes the account's sockets), and never later
  than ``TTL_SECS`` after it was cached, whatever happens to the stream;
* a lookup that raced a key change is not remembered: each emptying starts a
  new generation, and a result read in an older one is dropped;
* unknown keys are never remembered (a new account's key works at once);
* at most ``MAX_ENTRIES`` digests, the oldest forgotten first.

A process that does not follow key changes (the command line, a test's own
storage) never uses the cache.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from storage.records import Principal

# How long an entry may be used at most (a backstop: a key change reaches
# every node's stream well within it).
TTL_SECS = 10.0
# Digests remembered at most: an entry is a few hundred bytes.
MAX_ENTRIES = 10000


class KeyCache:
    """Digest -> principal, emptied on every key change this node sees."""

    def __init__(self, live: Callable[[], bool]):
        self.live = live  # True while key changes are followed and caught up
        self.generation = 0
        self._entries: collections.OrderedDict[str, tuple[Principal, float]] = (
            collections.OrderedDict()
        )

    def get(self, digest: str) -> Principal | None:
        """The remembered principal of ``digest``, if still valid."""
        if not self.live():
            return None
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if time.monotonic() - entry[1] > TTL_SECS:
            del self._entries[digest]
            return None
        return entry[0]

    def put(self, digest: str, principal: Principal, generation: int) -> None:
        """Remember a lookup that began in ``generation`` (dropped if a key
        changed since)."""
        if generation != self.generation or not self.live():
            return
        self._entries[digest] = (principal, time.monotonic())
        self._entries.move_to_end(digest)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)

    def forget_all(self) -> None:
        """A key changed, or changes may have gone unseen: forget everything.
        Runs on every insert into ``key_changes`` and every end of its stream."""
        self.generation += 1
        self._entries.clear()
