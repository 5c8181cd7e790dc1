"""The support workflow through the whole server over MongoStorage, with the
mongomock stand-in (query semantics only; the races are in the contract suite)."""

from __future__ import annotations

import pytest

from tests.handlers.test_mongo_server import mongo_standin_server  # noqa: F401 (fixture)
from tests.helpers import Api, Socket


@pytest.mark.gen_test(timeout=30)
async def test_transfer_read_and_presence_over_the_mongo_backend(mongo_standin_server):  # noqa: F811
    server = mongo_standin_server
    _, store_key = await server.raw_storage.create_store("Tech", None, None)
    dana, dana_key = await server.raw_storage.create_admin("Dana", None)
    omar, omar_key = await server.raw_storage.create_admin("Omar", None)
    api = Api(server.url + "/v1/chat")
    omar_ws = await Socket.connect(server.ws_url + "/v1/chat/admin/ws/", omar_key)
    assert (await omar_ws.recv())["type"] == "hello"
    sid = (await api.post("/store/message/", store_key, {"body": "help"})).json["session_id"]
    await api.post("/admin/session/claim/", dana_key, {"session_id": sid})
    dana_ws = await Socket.connect(server.ws_url + "/v1/chat/admin/ws/", dana_key)
    assert (await dana_ws.recv())["type"] == "hello"
    seen = await omar_ws.recv_type("presence")
    while seen["admin_id"] != dana.id:
        seen = await omar_ws.recv_type("presence")
    assert seen["status"] == "online"
    listed = (await api.get("/admin/admins/", omar_key)).json["results"]
    assert [(a["id"], a["presence"], a["active_sessions"]) for a in listed] == [
        (dana.id, "online", 1),
        (omar.id, "online", 0),
    ]
    moved = await api.post(
        "/admin/session/transfer/", dana_key, {"session_id": sid, "admin_id": omar.id}
    )
    assert moved.status == 200 and moved.json["admin_id"] == omar.id
    assert (await omar_ws.recv_type("session_transferred"))["session"]["id"] == sid
    assert (
        await api.post("/admin/message/", dana_key, {"session_id": sid, "body": "x"})
    ).status == 403
    mine = (await api.get("/admin/sessions/mine/", omar_key)).json["results"]
    assert [(s["id"], s["unread"]) for s in mine] == [(sid, 1)]
    read = await api.post("/admin/session/read/", omar_key, {"session_id": sid, "seq": 3})
    assert read.json == {"session_id": sid, "seq": 3}
    assert (await api.post("/admin/session/read/", omar_key, {"session_id": sid, "seq": 1})).json[
        "seq"
    ] == 3
    assert (await api.get("/store/session/", store_key)).json["unread"] == 0
    dana_ws.close()
    omar_ws.close()
