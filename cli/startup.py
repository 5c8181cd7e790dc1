"""What both a command and the server need before they run: storage opened and
set up, and the error that stops a start in one line."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from settings.shown import describe_storage
from storage.errors import StorageUnavailable


class StartupError(Exception):
    """The server cannot start (port in use, storage unreachable): one line, exit 1."""


@contextlib.asynccontextmanager
async def opened_storage(config: dict[str, Any]) -> AsyncIterator[Any]:
    """The configured storage, set up, closed on the way out; an unreachable or
    unwritable database becomes a one-line ``StartupError``."""
    from storage import open_storage

    storage = open_storage(config["storage"]["url"], config["storage"])
    try:
        await storage.setup()
        yield storage
    except StorageUnavailable as exc:
        where = describe_storage(config["storage"]["url"])
        raise StartupError(f"storage unavailable ({where}): {_one_line(exc)}") from None
    finally:
        await storage.close()


def _one_line(exc: BaseException) -> str:
    # PyMongo appends a long topology description; the cause comes before it.
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split(", Timeout:")[0].split(" Topology Description:")[0][:300]
