"""Domain errors: what the actors answer when a command cannot be done.

They say what went wrong in the chat's terms; ``handlers/errors.py`` is the one
place that turns them into HTTP statuses, DRF bodies and WebSocket error frames.
"""

from __future__ import annotations


class ChatError(Exception):
    """A command was refused for a reason the caller should hear about."""


class NotFound(ChatError):
    """No such session, or one the caller may not see (both are 404)."""


class PermissionDenied(ChatError):
    """The caller may see the session but not do this to it (403)."""


class Conflict(ChatError):
    """The session's state forbids the command (claimed by another, closed, limit)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class Invalid(ChatError):
    """Input failed validation; ``errors`` is DRF's field map (or ``detail`` text)."""

    def __init__(self, errors: dict[str, list[str]] | None = None, detail: str | None = None):
        super().__init__(detail or str(errors))
        self.errors = errors
        self.detail = detail


class Overloaded(ChatError):
    """Try again later: a full mailbox, a restarting actor, storage down."""

    def __init__(self, detail: str, retry_after_secs: int = 1):
        super().__init__(detail)
        self.detail = detail
        self.retry_after_secs = retry_after_secs


class MailboxFull(Overloaded):
    """The session's mailbox is full: the caller is told to retry (503)."""

    def __init__(self) -> None:
        super().__init__("Session is busy, try again shortly.")


class ActorStopped(Overloaded):
    """The actor stopped (passivated, failed too often, or shutting down) before
    answering; the command may be retried against a fresh actor."""

    def __init__(self) -> None:
        super().__init__("Session actor stopped before answering, try again.")
