"""``InstrumentedStorage``: any ``ChatStorage``, timed, counted, and with outages
turned into the domain's ``Overloaded`` (503 + Retry-After)."""

from __future__ import annotations

import functools
import inspect
import time
from typing import Any

from actors import metrics
from actors.errors import Overloaded
from storage.errors import StorageUnavailable

# How long clients are told to wait when the database is unreachable.
STORAGE_RETRY_AFTER_SECS = 5
# Long-lived calls whose duration is not an operation's latency.
UNTIMED: frozenset[str] = frozenset()


class InstrumentedStorage:
    """A storage wrapper that times every storage coroutine (the latency histograms)."""

    def __init__(self, inner: Any):
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name.endswith("_with_reply"):
            return self._timed_with_reply(name, attr)
        if not inspect.iscoroutinefunction(attr) or name in UNTIMED:
            return attr
        duration = metrics.STORAGE_DURATION.labels(name)
        errors = metrics.STORAGE_ERRORS.labels(name)

        @functools.wraps(attr)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await attr(*args, **kwargs)
            except StorageUnavailable as exc:
                errors.inc()
                raise _overloaded() from exc
            finally:
                duration.observe(time.perf_counter() - started)

        setattr(self, name, timed)  # built once per method, not per call
        return timed

    def _timed_with_reply(self, name: str, attr: Any) -> Any:
        """The same for a write answered by a callback (its last argument)."""
        duration = metrics.STORAGE_DURATION.labels(name)
        errors = metrics.STORAGE_ERRORS.labels(name)

        def timed(*args: Any) -> None:
            *head, reply = args
            started = time.perf_counter()

            def answer(result: Any, exc: BaseException | None) -> None:
                duration.observe(time.perf_counter() - started)
                if isinstance(exc, StorageUnavailable):
                    errors.inc()
                    cause, exc = exc, _overloaded()
                    exc.__cause__ = cause
                reply(result, exc)

            attr(*head, answer)

        setattr(self, name, timed)
        return timed


def _overloaded() -> Overloaded:
    """What a client is told when storage is unreachable: 503 with Retry-After."""
    return Overloaded("Storage is unavailable, try again later.", STORAGE_RETRY_AFTER_SECS)
