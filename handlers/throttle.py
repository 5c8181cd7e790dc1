"""Per-key rate limits (API.md: configurable, off by default).

A token bucket per principal in this process: ``rate_per_sec`` refills, up to
``burst``. With N worker processes each enforces its own bucket, so the whole
server admits at most N times the rate: a bound, which is what the limit is for.
"""

from __future__ import annotations

import math
import time

from handlers.errors import HTTPProblem
from storage.records import Principal

# Buckets idle this long are forgotten, so the table stays the size of the
# currently active keys rather than of every key ever seen.
IDLE_BUCKET_SECS = 600.0


class Throttle:
    """Per-account rate limits: a token bucket for each key's owner (``rate_per_sec`` 0: no
    limit)."""

    def __init__(self, rate_per_sec: float = 0.0, burst: int = 0):
        self.rate_per_sec = rate_per_sec
        self.burst = max(burst, 1)
        self._buckets: dict[tuple[str, int], tuple[float, float]] = {}
        self._swept_at = time.monotonic()

    def check(self, who: Principal) -> None:
        """Spend one token of ``who``'s bucket or raise 429 with ``Retry-After``."""
        if self.rate_per_sec <= 0:
            return
        now = time.monotonic()
        key = (who.role.value, who.id)
        tokens, stamp = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - stamp) * self.rate_per_sec)
        if tokens < 1.0:
            wait = math.ceil((1.0 - tokens) / self.rate_per_sec)
            self._buckets[key] = (tokens, now)
            raise HTTPProblem(
                429,
                f"Request was throttled. Expected available in {wait} seconds.",
                {"Retry-After": str(wait)},
            )
        self._buckets[key] = (tokens - 1.0, now)
        if now - self._swept_at > IDLE_BUCKET_SECS:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        self._swept_at = now
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < IDLE_BUCKET_SECS}
