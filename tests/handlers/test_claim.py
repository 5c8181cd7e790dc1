"""The claim endpoint exactly as the seed page and API.md describe it."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.helpers import claimed_session, make_admin, make_store, open_session

SEED_FIELDS = {
    "id": int,
    "store_id": int,
    "admin_id": int,
    "status": str,
    "last_message_at": str,
    "created": str,
    "updated": str,
    "store": dict,
}
STORE_FIELDS = {"id": int, "name": str, "logo_url": str, "email": str}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.mark.gen_test
async def test_the_claim_response_has_exactly_the_seeds_fields_and_types(server, api):
    store, store_key = await make_store(server)
    admin, admin_key = await make_admin(server)
    session = await open_session(api, store_key)
    reply = await api.post("/admin/session/claim/", admin_key, {"session_id": session["id"]})
    assert reply.status == 200
    body = reply.json
    assert list(body) == list(SEED_FIELDS)
    for name, kind in SEED_FIELDS.items():
        assert isinstance(body[name], kind), name
    assert {k: type(v) for k, v in body["store"].items()} == STORE_FIELDS
    for stamp in ("last_message_at", "created", "updated"):
        assert ISO_Z.match(body[stamp]), body[stamp]
    assert body["status"] == "claimed" and body["admin_id"] == admin.id
    assert body["store_id"] == store.id == body["store"]["id"]
    assert body["updated"] >= body["created"]


@pytest.mark.gen_test
async def test_a_claim_moves_the_session_from_the_queue_to_my_sessions(server, api):
    _, store_key = await make_store(server)
    _, admin_key = await make_admin(server)
    session = await open_session(api, store_key)
    queue = await api.get("/admin/sessions/open/", admin_key)
    assert [s["id"] for s in queue.json["results"]] == [session["id"]]
    await api.post("/admin/session/claim/", admin_key, {"session_id": session["id"]})
    assert (await api.get("/admin/sessions/open/", admin_key)).json["results"] == []
    mine = await api.get("/admin/sessions/mine/", admin_key)
    assert [s["id"] for s in mine.json["results"]] == [session["id"]]


@pytest.mark.gen_test
async def test_a_retried_claim_by_the_holder_answers_200_with_the_session_unchanged(server, api):
    _, store_key = await make_store(server)
    _, admin_key = await make_admin(server)
    session = await open_session(api, store_key)
    first = await api.post("/admin/session/claim/", admin_key, {"session_id": session["id"]})
    again = await api.post("/admin/session/claim/", admin_key, {"session_id": session["id"]})
    assert again.status == 200 and again.json == first.json
    history = await api.get(f"/admin/session/{session['id']}/", admin_key)
    joined = [m for m in history.json["messages"] if m.get("event") == "admin_connected"]
    assert len(joined) == 1  # the retry wrote nothing


@pytest.mark.gen_test
async def test_a_claim_writes_an_admin_connected_system_message(server, api):
    store_key, _admin_key, _session = await claimed_session(server, api)
    history = (await api.get("/store/session/", store_key)).json
    system = history["messages"][-1]
    assert system["sender"] == "system" and system["sender_id"] is None
    assert system["event"] == "admin_connected" and system["body"] == "Dana joined the chat"
    # system messages leave last_message_at alone
    assert history["last_message_at"] == history["messages"][0]["created"]


@pytest.mark.gen_test
async def test_fifty_concurrent_claims_of_one_session_have_exactly_one_winner(server, api):
    _, store_key = await make_store(server)
    keys = [(await make_admin(server, f"Admin{i}"))[1] for i in range(50)]
    session = await open_session(api, store_key)
    replies = await asyncio.gather(
        *[api.post("/admin/session/claim/", key, {"session_id": session["id"]}) for key in keys]
    )
    statuses = sorted(r.status for r in replies)
    assert statuses == [200] + [409] * 49
    assert all(r.json == {"detail": "Session already claimed."} for r in replies if r.status == 409)
    winner = next(r.json for r in replies if r.status == 200)
    stored = await server.raw_storage.get_session(session["id"])
    assert stored.admin_id == winner["admin_id"]


class TestSessionLimit:
    @pytest.fixture
    def overrides(self):
        return {"chat": {"max_sessions_per_admin": 2}}

    @pytest.mark.gen_test
    async def test_a_claim_over_the_limit_answers_409_limit_reached(self, server, api):
        _, admin_key = await make_admin(server)
        sessions = [
            await open_session(api, (await make_store(server, f"S{i}"))[1]) for i in range(3)
        ]
        for s in sessions[:2]:
            assert (
                await api.post("/admin/session/claim/", admin_key, {"session_id": s["id"]})
            ).status == 200
        reply = await api.post(
            "/admin/session/claim/", admin_key, {"session_id": sessions[2]["id"]}
        )
        assert (reply.status, reply.json) == (409, {"detail": "Session limit reached."})
        # the refused session is still waiting in the queue, untouched
        queue = await api.get("/admin/sessions/open/", admin_key)
        assert [s["id"] for s in queue.json["results"]] == [sessions[2]["id"]]
        # closing one frees a place
        await api.post("/admin/session/close/", admin_key, {"session_id": sessions[0]["id"]})
        assert (
            await api.post("/admin/session/claim/", admin_key, {"session_id": sessions[2]["id"]})
        ).status == 200

    @pytest.mark.gen_test
    async def test_concurrent_claims_never_take_an_admin_over_the_limit(self, server, api):
        _, admin_key = await make_admin(server)
        sessions = [
            await open_session(api, (await make_store(server, f"S{i}"))[1]) for i in range(8)
        ]
        replies = await asyncio.gather(
            *[
                api.post("/admin/session/claim/", admin_key, {"session_id": s["id"]})
                for s in sessions
            ]
        )
        assert sorted(r.status for r in replies) == [200, 200] + [409] * 6
        mine = await api.get("/admin/sessions/mine/", admin_key)
        assert len(mine.json["results"]) == 2


@pytest.mark.gen_test
async def test_release_puts_the_session_back_at_the_end_of_the_queue(server, api):
    _, admin_key = await make_admin(server)
    first = await open_session(api, (await make_store(server, "A"))[1])
    second = await open_session(api, (await make_store(server, "B"))[1])
    await api.post("/admin/session/claim/", admin_key, {"session_id": first["id"]})
    reply = await api.post("/admin/session/release/", admin_key, {"session_id": first["id"]})
    assert reply.status == 200
    assert reply.json["status"] == "open" and reply.json["admin_id"] is None
    queue = await api.get("/admin/sessions/open/", admin_key)
    assert [s["id"] for s in queue.json["results"]] == [second["id"], first["id"]]


@pytest.mark.gen_test
async def test_a_repeated_close_by_the_closer_answers_200_unchanged(server, api):
    _, store_key = await make_store(server)
    _, admin_key = await make_admin(server)
    session = await open_session(api, store_key)
    sid = {"session_id": session["id"]}
    await api.post("/admin/session/claim/", admin_key, sid)
    closed = await api.post("/admin/session/close/", admin_key, sid)
    again = await api.post("/admin/session/close/", admin_key, sid)
    assert closed.status == again.status == 200
    assert again.json == closed.json and closed.json["status"] == "closed"
