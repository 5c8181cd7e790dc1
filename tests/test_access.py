"""Who may see and change a session: every access checks who is asking."""

from __future__ import annotations

import pytest

from tests.conftest import make_admin, make_store, open_session

NO_PERMISSION = {"detail": "You do not have permission to perform this action."}


@pytest.mark.gen_test
async def test_another_admins_claimed_session_is_403_for_read_send_release_close(server, api):
    _, store_key = await make_store(server)
    _, dana = await make_admin(server, "Dana")
    _, omar = await make_admin(server, "Omar")
    session = await open_session(api, store_key)
    sid = session["id"]
    await api.post("/admin/session/claim/", dana, {"session_id": sid})
    attempts = [
        await api.get(f"/admin/session/{sid}/", omar),
        await api.post("/admin/message/", omar, {"session_id": sid, "body": "hi"}),
        await api.post("/admin/session/release/", omar, {"session_id": sid}),
        await api.post("/admin/session/close/", omar, {"session_id": sid}),
    ]
    assert [(r.status, r.json) for r in attempts] == [(403, NO_PERMISSION)] * 4
    # and nothing changed
    view = await api.get(f"/admin/session/{sid}/", dana)
    assert view.json["status"] == "claimed" and view.json["admin_id"] is not None
    assert [m["sender"] for m in view.json["messages"]] == ["store", "system"]


@pytest.mark.gen_test
async def test_an_open_session_may_be_read_by_any_admin_but_not_written(server, api):
    _, store_key = await make_store(server)
    _, omar = await make_admin(server, "Omar")
    session = await open_session(api, store_key, "look at me")
    view = await api.get(f"/admin/session/{session['id']}/", omar)
    assert view.status == 200 and view.json["messages"][0]["body"] == "look at me"
    reply = await api.post("/admin/message/", omar, {"session_id": session["id"], "body": "x"})
    assert (reply.status, reply.json) == (403, NO_PERMISSION)


@pytest.mark.gen_test
async def test_a_closed_session_stays_readable_only_by_the_admin_who_held_it(server, api):
    _, store_key = await make_store(server)
    _, dana = await make_admin(server, "Dana")
    _, omar = await make_admin(server, "Omar")
    session = await open_session(api, store_key)
    sid = {"session_id": session["id"]}
    await api.post("/admin/session/claim/", dana, sid)
    await api.post("/admin/session/close/", dana, sid)
    assert (await api.get(f"/admin/session/{session['id']}/", dana)).status == 200
    assert (await api.get(f"/admin/session/{session['id']}/", omar)).status == 403
    # a close attempt by someone else is still 403, not 409: permission comes first
    assert (await api.post("/admin/session/close/", omar, sid)).status == 403


@pytest.mark.gen_test
async def test_a_store_sees_only_its_own_session(server, api):
    _, key_a = await make_store(server, "A")
    _, key_b = await make_store(server, "B")
    session_a = await open_session(api, key_a, "from A")
    session_b = await open_session(api, key_b, "from B")
    assert session_a["id"] != session_b["id"]
    view = (await api.get("/store/session/", key_b)).json
    assert view["id"] == session_b["id"]
    assert [m["body"] for m in view["messages"]] == ["from B"]


@pytest.mark.gen_test
async def test_keys_are_stored_only_as_digests(server, config):
    import hashlib
    import sqlite3

    _, key = await make_admin(server)
    path = config["storage"]["url"][len("sqlite:///"):]
    with sqlite3.connect(path) as conn:
        dump = "\n".join(conn.iterdump())
    assert key not in dump
    assert hashlib.sha256(key.encode()).hexdigest() in dump
