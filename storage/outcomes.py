"""What a guarded write answers: won, refused and why, done or unchanged.

The outcomes and the rules that classify a refused write, shared by every
backend so they all refuse in the same words (API.md's order).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from storage.records import Message, Session, SessionStatus


class ClaimOutcome(str, enum.Enum):
    """How a claim ended: won, or why not (the API maps each to its status)."""

    WON = "won"
    ALREADY_HELD = "already_held"  # a retry by the admin who holds it
    CONFLICT = "conflict"
    LIMIT = "limit"
    NOT_FOUND = "not_found"
    CLOSED = "closed"


class WriteOutcome(str, enum.Enum):
    """Result of a guarded write by the session's holder (message, release, close)."""

    DONE = "done"
    UNCHANGED = "unchanged"  # repeated close by the admin who closed it
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"  # not this caller's session
    CLOSED = "closed"


@dataclass(frozen=True)
class ClaimResult:
    """A claim's outcome and the session as it stands after it (None if not found)."""

    outcome: ClaimOutcome
    session: Session | None


@dataclass(frozen=True)
class SessionWrite:
    """A release's or close's outcome and the session as it stands after it."""

    outcome: WriteOutcome
    session: Session | None


@dataclass(frozen=True)
class PostResult:
    """A message post: ``created`` is False when ``client_id`` repeated."""

    outcome: WriteOutcome
    message: Message | None = None
    session: Session | None = None
    created: bool = False


def why_claim_failed(
    session: Session | None, admin_id: int, limit_hit: bool = False
) -> ClaimOutcome:
    """Classify a claim whose guarded write matched nothing, from a read of the
    session made after the guard (shared by every backend)."""
    if session is None:
        return ClaimOutcome.NOT_FOUND
    if session.status is SessionStatus.CLOSED:
        return ClaimOutcome.CLOSED
    if session.status is SessionStatus.CLAIMED:
        return ClaimOutcome.ALREADY_HELD if session.admin_id == admin_id else ClaimOutcome.CONFLICT
    # Still open, yet refused: only the per-admin limit (or a lost race) is left.
    return ClaimOutcome.LIMIT if limit_hit else ClaimOutcome.CONFLICT


def holder_refusal(
    session: Session | None, admin_id: int, closed_ok: bool = False
) -> SessionWrite | None:
    """None when ``admin_id`` holds the (unclosed) session; else why not, in
    API.md's order: not found, then not yours, then closed."""
    if session is None:
        return SessionWrite(WriteOutcome.NOT_FOUND, None)
    if session.admin_id != admin_id or session.status is SessionStatus.OPEN:
        return SessionWrite(WriteOutcome.FORBIDDEN, session)
    if session.status is SessionStatus.CLOSED:
        return SessionWrite(WriteOutcome.UNCHANGED if closed_ok else WriteOutcome.CLOSED, session)
    return None
