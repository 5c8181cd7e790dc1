"""The whole server over MongoStorage, with mongomock standing in for MongoDB.

mongomock is a stand-in for query semantics only (no server, no replica set, no
change streams), so this shows the Mongo backend wired end to end through the
actors, the change feed (polling fallback) and the hub, not MongoDB itself.
"""

from __future__ import annotations

import pytest
import tornado.testing

from handlers.app import ChatServer
from storage.mongo import MongoStorage
from tests.helpers import Api, Socket
from tests.mongomock_async import AsyncDatabase


@pytest.fixture
def mongo_standin_server(io_loop, config):
    srv = ChatServer(config, storage=MongoStorage(AsyncDatabase()))
    sock, port = tornado.testing.bind_unused_port()
    io_loop.run_sync(lambda: srv.start([sock]))
    srv.url, srv.ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    yield srv
    io_loop.run_sync(srv.shutdown, timeout=30)


@pytest.mark.gen_test(timeout=30)
async def test_the_chat_flow_over_the_mongo_backend_with_the_mongomock_standin(
    mongo_standin_server,
):
    server = mongo_standin_server
    _, store_key = await server.raw_storage.create_store("Tech", None, None)
    admin, admin_key = await server.raw_storage.create_admin("Dana", None)
    api = Api(server.url + "/v1/chat")
    store = await Socket.connect(server.ws_url + "/v1/chat/store/ws/", store_key)
    assert (await store.recv())["type"] == "hello"
    ack = await store.request({"type": "message", "body": "help", "client_id": "c1"})
    sid = ack["message"]["session_id"]
    claim = await api.post("/admin/session/claim/", admin_key, {"session_id": sid})
    assert claim.status == 200 and claim.json["admin_id"] == admin.id
    assert (await store.recv_type("admin_connected"))["admin"]["name"] == "Dana"
    await api.post("/admin/message/", admin_key, {"session_id": sid, "body": "hi"})
    frame = await store.recv_type("message")
    while frame["message"]["sender"] != "admin":
        frame = await store.recv_type("message")
    assert frame["message"]["seq"] == 3
    again = await api.post("/store/message/", store_key, {"body": "help", "client_id": "c1"})
    assert again.status == 200 and again.json["id"] == ack["message"]["id"]
    history = await api.get(f"/admin/session/{sid}/", admin_key)
    assert [m["seq"] for m in history.json["messages"]] == [1, 2, 3]
    assert (await Api(server.url).get("/readyz")).status == 200
