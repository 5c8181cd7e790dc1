"""Admin REST endpoints (API.md "Admin endpoints")."""

from __future__ import annotations

from actors.errors import NotFound
from handlers.base import APIHandler
from handlers.paging import decode_cursor, history_window, list_limit, next_url
from handlers.render import message_json, session_json
from handlers.validation import Fields, path_id
from storage.records import Role


class AdminHandler(APIHandler):
    role = Role.ADMIN

    def session_id_from_body(self) -> int:
        fields = Fields(self.json_body())
        session_id = fields.positive_int("session_id")
        fields.check()
        return session_id


class OpenSessionsHandler(AdminHandler):
    metric_name = "admin_open_sessions"

    async def get(self) -> None:
        limit = list_limit(self)
        rows = await self.service.open_sessions(limit + 1, decode_cursor(self))
        self.respond(
            {
                "results": [session_json(s) for s in rows[:limit]],
                "next": next_url(self, rows, limit, "queued_at"),
            }
        )


class MySessionsHandler(AdminHandler):
    metric_name = "admin_my_sessions"

    async def get(self) -> None:
        limit = list_limit(self)
        rows = await self.service.admin_sessions(self.principal, limit + 1, decode_cursor(self))
        unread = await self.service.with_unread(self.principal, rows[:limit])
        self.respond(
            {
                "results": [{**session_json(s), "unread": n} for s, n in unread],
                "next": next_url(self, rows, limit, "activity_at"),
            }
        )


class StoreSessionsHandler(AdminHandler):
    """``GET admin/stores/<id>/sessions/``: the store's sessions, newest first,
    paged like My Sessions; only for the admin holding its current session."""

    metric_name = "admin_store_sessions"

    async def get(self, store_id: str) -> None:
        limit = list_limit(self)
        before = decode_cursor(self)
        wanted = path_id(store_id)
        if wanted is None:
            raise NotFound()
        rows = await self.service.store_sessions(self.principal, wanted, limit + 1, before)
        self.respond(
            {
                "results": [session_json(s) for s in rows[:limit]],
                "next": next_url(self, rows, limit, "created"),
            }
        )


class SessionDetailHandler(AdminHandler):
    metric_name = "admin_session"

    async def get(self, session_id: str) -> None:
        after_seq, limit = history_window(self)
        wanted = path_id(session_id)
        if wanted is None:
            raise NotFound()
        session = await self.service.readable_session(self.principal, wanted)
        await self.respond_with_history(session, after_seq, limit)


class ClaimHandler(AdminHandler):
    metric_name = "admin_claim"

    async def post(self) -> None:
        session = await self.service.claim(self.principal, self.session_id_from_body())
        self.respond(session_json(session))


class ReleaseHandler(AdminHandler):
    metric_name = "admin_release"

    async def post(self) -> None:
        session = await self.service.release(self.principal, self.session_id_from_body())
        self.respond(session_json(session))


class CloseHandler(AdminHandler):
    metric_name = "admin_close"

    async def post(self) -> None:
        session = await self.service.close(self.principal, self.session_id_from_body())
        self.respond(session_json(session))


class AdminMessageHandler(AdminHandler):
    metric_name = "admin_message"

    async def post(self) -> None:
        fields = Fields(self.json_body())
        session_id = fields.positive_int("session_id")
        body, client_id = fields.message_fields()
        fields.check()
        result = await self.service.post_admin_message(self.principal, session_id, body, client_id)
        self.respond(message_json(result.message), 201 if result.created else 200)
