"""Records from MongoDB documents: a document's ``_id`` is the record's ``id``."""

from __future__ import annotations

from typing import Any, Protocol

from storage.documents import message_from_doc, session_from_doc
from storage.records import Message, Session

# A document as the driver hands it out.
Doc = dict[str, Any]


class SessionIds(Protocol):
    """What a feed event needs of the session it is about."""

    @property
    def id(self) -> int:
        """The session's id (0 for an event about an admin)."""
        ...

    @property
    def store_id(self) -> int:
        """The session's store (0 for an event about an admin)."""
        ...


def session_of(doc: Doc) -> Session:
    """The session stored in ``doc``."""
    return session_from_doc({**doc, "id": doc["_id"]})


def maybe_session(doc: Doc | None) -> Session | None:
    """The session stored in ``doc``, or None for no document (a find's answer)."""
    return None if doc is None else session_of(doc)


def message_of(doc: Doc) -> Message:
    """The message stored in ``doc`` (its feed event left out)."""
    return message_from_doc({**doc, "id": doc["_id"]})
