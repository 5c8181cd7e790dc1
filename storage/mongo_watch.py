"""Change-stream wake-ups for the event feed, healing themselves.

The stream is only a wake-up: events are still read by id through
``read_events``, which keeps their order. A stream may end for any reason (a
non-resumable error, a step-down, a lost connection, an invalidation); it is
then reopened with a growing wait, while the feed's polling bridges the gap.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from pymongo.errors import OperationFailure, PyMongoError

log = logging.getLogger(__name__)

# Reopening a change stream that ended: the first wait, doubled up to the
# last; a stream that stayed open this long is healthy and resets the wait.
WATCH_RETRY_FIRST_SECS = 0.1
WATCH_RETRY_MAX_SECS = 5.0
WATCH_HEALTHY_SECS = 10.0
# Server error codes meaning change streams cannot work here at all (a
# standalone server): the feed then just polls.
CHANGE_STREAMS_UNSUPPORTED = frozenset({40573, 40324})


async def watch_inserts(events: Any, on_insert: Callable[[], None]) -> bool:
    """Call ``on_insert`` for each event any node stores, until cancelled.

    Uses a change stream, so other nodes' events are read at once instead
    of at the next poll. The stream is only a wake-up: events are still
    read by id through ``read_events``, which keeps their order. A stream
    that ends for any reason is reopened, waiting longer after each
    failure; while it is down the feed's polling bridges the gap, and
    ``on_insert`` runs on each reopen to read what arrived meanwhile.
    Returns False at once where change streams are unsupported (the
    mongomock stand-in): the feed then just polls.
    """
    wait = WATCH_RETRY_FIRST_SECS
    reopening = False
    loop = asyncio.get_running_loop()
    while True:
        opened_at = loop.time()
        try:
            stream = await events.watch([{"$match": {"operationType": "insert"}}])
            async with stream:
                if reopening:
                    log.info("change stream reopened")
                    on_insert()
                async for _change in stream:
                    on_insert()
            reason = "the server closed it"
        except (NotImplementedError, AttributeError, TypeError):
            return False
        except OperationFailure as exc:
            if exc.code in CHANGE_STREAMS_UNSUPPORTED:
                log.info("change streams unsupported here (%s); the feed polls", exc)
                return False
            reason = str(exc)
        except PyMongoError as exc:
            reason = str(exc)
        if loop.time() - opened_at > WATCH_HEALTHY_SECS:
            wait = WATCH_RETRY_FIRST_SECS
        log.warning("change stream ended (%s); polling, reopening in %.1fs", reason, wait)
        reopening = True
        await asyncio.sleep(wait)
        wait = min(wait * 2, WATCH_RETRY_MAX_SECS)
