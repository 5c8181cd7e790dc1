"""The support workflow's endpoints and frames (API.md "Support workflow").

REST: transfer, read marks (admin and store), the admins list with presence.
WebSocket frames: ``read`` (either side) and ``presence`` (admins). Thin like
the other handlers: validate, ask the service, render.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from typing import Any

from actors.errors import Invalid, NotFound, PermissionDenied
from handlers.base import APIHandler
from handlers.frame_fields import describe_bad_choice
from handlers.paging import list_limit
from handlers.render import session_json
from handlers.validation import MAX_INT, Fields, decode_json, is_int, required
from storage.records import Admin, Principal, Role
from storage.workflow import AWAY, ONLINE, AdminPresence

PRESENCE_CHOICES = (AWAY, ONLINE)


class TransferHandler(APIHandler):
    """``POST /v1/chat/admin/session/transfer/``: hand a held session to another admin."""

    role = Role.ADMIN
    metric_name = "admin_transfer"

    async def post(self) -> None:
        """Runs for a POST: transfer the session to ``admin_id``."""
        fields = Fields(self.json_body())
        session_id = fields.positive_int("session_id")
        admin_id = fields.positive_int("admin_id")
        fields.check()
        session = await self.service.transfer(self.who, required(session_id), required(admin_id))
        self.respond(session_json(session))


class ReadHandler(APIHandler):
    """``POST .../session/read/``: a side marks its reading (the subclasses
    below say which side)."""

    metric_name = "session_read"

    async def post(self) -> None:
        """Runs for a POST: raise this side's read position to ``seq``."""
        session_id, seq = read_fields(self.json_body())
        result = await self.service.mark_read(self.who, session_id, seq)
        self.respond({"session_id": session_id, "seq": result.seq})


class AdminReadHandler(ReadHandler):
    """``POST .../admin/session/read/``: the admin side's reading."""

    role = Role.ADMIN
    metric_name = "admin_session_read"


class StoreReadHandler(ReadHandler):
    """``POST .../store/session/read/``: the store side's reading."""

    role = Role.STORE
    metric_name = "store_session_read"


class AdminsHandler(APIHandler):
    """``GET /v1/chat/admin/admins/``: the admins with presence, for the transfer picker."""

    role = Role.ADMIN
    metric_name = "admin_admins"

    async def get(self) -> None:
        """Runs for a GET: one page of admins by id and the cursor of the next."""
        limit = list_limit(self)
        after = decode_admin_cursor(self.get_query_argument("cursor", None))
        rows = await self.service.admins_with_presence(limit + 1, after)
        self.respond(
            {
                "results": [admin_presence_json(r) for r in rows[:limit]],
                "next": self._next(rows, limit),
            }
        )

    def _next(self, rows: list[AdminPresence], limit: int) -> str | None:
        if len(rows) <= limit:
            return None
        cursor = base64.urlsafe_b64encode(json.dumps([rows[limit - 1].admin.id]).encode())
        query = urllib.parse.urlencode({"limit": limit, "cursor": cursor.decode()})
        request = self.request
        return f"{request.protocol}://{request.host}{request.path}?{query}"


def admin_presence_json(row: AdminPresence) -> dict[str, Any]:
    """An admin with presence as the API shows it."""
    admin: Admin = row.admin
    return {
        "id": admin.id,
        "name": admin.name,
        "email": admin.email,
        "presence": row.presence,
        "active_sessions": row.active_sessions,
    }


# A cursor we made is ~30 characters.
MAX_ADMIN_CURSOR_CHARS = 64


def decode_admin_cursor(raw: str | None) -> int:
    """The admin id a ``next`` URL carries (0: the first page); anything we
    did not make is 404, as for the session lists."""
    if not raw:
        return 0
    if len(raw) > MAX_ADMIN_CURSOR_CHARS or not raw.isascii():
        raise NotFound()
    try:
        position = decode_json(base64.b64decode(raw.encode(), altchars=b"-_", validate=True))
    except (binascii.Error, ValueError, Invalid):
        raise NotFound() from None
    if not (
        isinstance(position, list)
        and len(position) == 1
        and is_int(position[0])
        and 1 <= position[0] <= MAX_INT
    ):
        raise NotFound()
    return position[0]


def read_fields(data: dict[str, Any]) -> tuple[int, int]:
    """``session_id`` and ``seq`` of a read request's body, or 400."""
    fields = Fields(data)
    session_id = fields.positive_int("session_id")
    seq = fields.positive_int("seq")
    fields.check()
    return required(session_id), required(seq)


# --- WebSocket frames (registered in handlers/websocket.py) ---------------------------
async def on_read_frame(socket: Any, frame: dict[str, Any], ref: Any) -> None:
    """``{"type": "read", "session_id", "seq"}`` from either side: ``ack`` with
    the side's position; the other side gets ``read``."""
    session_id, seq = read_fields(frame)
    result = await socket.service.mark_read(socket.principal, session_id, seq)
    socket.send({"type": "ack", "ref": ref, "session_id": session_id, "seq": result.seq})


async def on_presence_frame(socket: Any, frame: dict[str, Any], ref: Any) -> None:
    """``{"type": "presence", "status": "away"|"online"}`` from an admin:
    ``ack`` with the status; every admin socket gets ``presence`` on a change."""
    who: Principal = socket.principal
    if who.role is not Role.ADMIN:
        raise PermissionDenied()
    status = frame.get("status")
    if status not in PRESENCE_CHOICES:
        raise Invalid({"status": [describe_bad_choice(status)]})
    await socket.service.presence.set_away(who.id, status == AWAY)
    socket.send({"type": "ack", "ref": ref, "status": status})


FRAME_HANDLERS = {"read": on_read_frame, "presence": on_presence_frame}
