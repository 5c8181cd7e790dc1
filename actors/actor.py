"""What an actor implements: the hooks the runtime (``actors/runtime.py``) calls
and when it calls them."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from storage.base import Reply

# What a command is answered with.
R_co = TypeVar("R_co", covariant=True)


class Command(Generic[R_co]):
    """Base of the commands ``ActorSystem.ask`` takes: one answered with an
    ``R_co`` (the actor's ``receive`` returns it), so ``ask`` returns that type."""


class Actor:
    """Base class for actors. One instance handles one command at a time."""

    async def on_start(self) -> None:
        """Runs before the first command, and again after each restart."""

    async def receive(self, command: Any) -> Any:
        """Handle one command; return the reply or raise ``ChatError``."""
        raise NotImplementedError

    async def on_stop(self) -> None:
        """Runs once when the actor stops (passivation, shutdown, too many failures)."""

    def overlap_key(self, command: Any) -> Any:
        """Commands queued back to back with the same key (not None) may run
        overlapped: all started at once, answered in order. Only for commands
        whose effects storage applies in the order they were started. Called
        by the mailbox loop when it takes a command; None (the default) runs
        each command alone."""
        return None

    def start_now(self, command: Any, reply: Reply) -> bool:
        """Start ``command`` without a coroutine and return True, answering
        ``reply(result, error)`` later (exactly once, on the loop); or return
        False, and the command goes through ``receive``. Called by
        ``ask_with_reply`` when nothing is queued and nothing runs but
        commands of the same overlap key."""
        return False
