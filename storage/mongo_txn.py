"""``ChangeRunner``: runs each MongoDB state change as one multi-document transaction.

A claim, release, close or message is several writes (the session, the admin's
count, the message, the feed's events). On a replica set they are committed
together or not at all, so a failure between them can leave nothing half done.
The rules an implementation keeps:

* the whole change runs inside ``with_transaction`` (read concern ``snapshot``,
  the client's write concern, ``majority`` by default), which retries the
  callback on ``TransientTransactionError`` and the commit on
  ``UnknownTransactionCommitResult``, with jittered backoff;
* every change has one deadline (``timeout_secs``, the driver's client-side
  operation timeout) covering every retry and server selection; past it the
  caller gets ``StorageUnavailable`` (503, retry later);
* changes run in parallel, as many as callers start. No document is written
  by every change (ids come from blocks reserved outside transactions, the
  feed from the oplog), so two changes conflict only on what they both touch:
  the same session, the same admin's count, the same store's first session.
  A change may name what it is about (``key``: a session, a store); changes
  with the same key wait for each other here, in this process, instead of
  conflicting in the database and retrying (the actors keep one command at a
  time per session already; this covers callers beside them);
* after a change that failed for good its server session is killed, so a
  transaction the driver could not abort does not keep documents locked until
  the server's transaction lifetime limit (60 s) reaps it.

The callback may raise ``Refused(result)`` to abort and answer ``result``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, ParamSpec, TypeVar

import pymongo
from pymongo.errors import DuplicateKeyError, PyMongoError, WriteConcernError
from pymongo.read_concern import ReadConcern

from storage.errors import StorageUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

# Whole-change attempts after an error the driver does not retry by itself: a
# unique index refusing a key another node committed a moment ago (the retry
# reads that node's write and answers from it), or a write-concern error on a
# statement inside the transaction (nothing was committed).
CHANGE_ATTEMPTS = 3
# How long to spend killing the server session of a change that failed: short,
# as it only spares other changes the wait for the server's 60 s reaping.
KILL_SESSION_TIMEOUT_SECS = 1.0
# A kill the server refused is tried again this often, for this long (longer
# than an election: a step-down's new primary takes it).
KILL_RETRY_INTERVAL_SECS = 0.25
KILL_RETRY_SECS = 15.0


def available(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn driver failures into ``StorageUnavailable`` (503, retry later)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except PyMongoError as exc:
            raise StorageUnavailable(str(exc)) from exc

    return wrapper


def available_but_duplicates(
    method: Callable[P, Awaitable[T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """As ``available``, but a duplicate key is the caller's to handle (the
    workflow's first-time upserts racing another process)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except DuplicateKeyError:
            raise
        except PyMongoError as exc:
            raise StorageUnavailable(str(exc)) from exc

    return wrapper


def _retire(session: Any) -> Any:
    """The server session id of a change that failed, marked so the driver
    discards it instead of pooling it: it is about to be killed, and a change
    running in parallel must not be handed it meanwhile."""
    server_session = getattr(session, "_server_session", None)
    if server_session is not None:
        server_session.mark_dirty()
    return session.session_id


class Refused(Exception):
    """Raised inside a change to abort its transaction and answer ``result``."""

    def __init__(self, result: Any) -> None:
        super().__init__("change refused")
        self.result = result


class ChangeRunner:
    """Runs changes, each one transaction, as many at once as callers start."""

    def __init__(self, client: Any, timeout_secs: float) -> None:
        # None: the mongomock stand-in, which has no sessions. Its calls never
        # suspend, so a change still runs without interleaving (tests only).
        self.client = client
        self.timeout_secs = timeout_secs
        # key -> [lock, how many changes hold or wait for it]; dropped at 0.
        self._keys: dict[Hashable, tuple[asyncio.Lock, list[int]]] = {}
        self._killing: set[asyncio.Task[None]] = set()  # kills retried in the background

    async def run(self, change: Callable[[Any], Awaitable[T]], key: Hashable | None = None) -> T:
        """Run ``change(session)`` in a transaction; its result, or the result
        of the ``Refused`` it raised. Runs on every state change; changes with
        the same ``key`` run one at a time."""
        if key is None:
            return await self._run(change)
        lock, users = self._keys.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            try:
                async with asyncio.timeout(self.timeout_secs):
                    await lock.acquire()
            except TimeoutError:
                raise StorageUnavailable(
                    "storage too slow: changes to one session are queued past their deadline"
                ) from None
            try:
                return await self._run(change)
            finally:
                lock.release()
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._keys[key]

    async def _run(self, change: Callable[[Any], Awaitable[T]]) -> T:
        if self.client is None:
            try:
                return await change(None)
            except Refused as refused:
                answer: T = refused.result  # the change's own answer, of its type
                return answer
        failed: list[Any] = []  # the server session of a change that failed
        try:
            with pymongo.timeout(self.timeout_secs):
                return await self._run_with_retries(change, failed)
        finally:
            if failed:  # outside the change's deadline, which has usually expired
                await self._kill(failed[0])

    async def _run_with_retries(
        self, change: Callable[[Any], Awaitable[T]], failed: list[Any]
    ) -> T:
        for attempt in range(1, CHANGE_ATTEMPTS + 1):
            async with self.client.start_session() as session:
                try:
                    result: T = await session.with_transaction(
                        change, read_concern=ReadConcern("snapshot")
                    )
                    return result
                except Refused as refused:
                    answer: T = refused.result  # the change's own answer, of its type
                    return answer
                except (DuplicateKeyError, WriteConcernError) as exc:
                    if attempt == CHANGE_ATTEMPTS:
                        failed.append(_retire(session))
                        raise
                    log.info("change retried after %s", exc)
                except PyMongoError:
                    failed.append(_retire(session))
                    raise
        raise AssertionError("unreachable")

    async def _kill(self, session_id: Any) -> None:
        """Abort the failed change's transaction on the server, if it is left.
        If the server cannot take the kill now (a step-down, a lost
        connection), keep trying for a while in the background: with changes
        in parallel several may fail at once, and each transaction left open
        would block its session until the server reaps it."""
        if not await self._try_kill(session_id):
            task = asyncio.get_running_loop().create_task(self._kill_later(session_id))
            self._killing.add(task)
            task.add_done_callback(self._killing.discard)

    async def _try_kill(self, session_id: Any) -> bool:
        try:
            with pymongo.timeout(KILL_SESSION_TIMEOUT_SECS):
                await self.client.admin.command("killSessions", [session_id])
            return True
        except PyMongoError as exc:
            log.info("could not kill a failed change's session: %s", exc)
            return False

    async def _kill_later(self, session_id: Any) -> None:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + KILL_RETRY_SECS
        while loop.time() < give_up_at:
            await asyncio.sleep(KILL_RETRY_INTERVAL_SECS)
            if await self._try_kill(session_id):
                return
        log.warning(
            "a failed change's session could not be killed; the server reaps its "
            "transaction after transactionLifetimeLimitSeconds"
        )
