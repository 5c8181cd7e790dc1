"""Who may see and change a session: every access checks who is asking."""

from __future__ import annotations

import pytest

from tests.helpers import make_admin, make_store, open_session

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
    path = config["storage"]["url"][len("sqlite:///") :]
    with sqlite3.connect(path) as conn:
        dump = "\n".join(conn.iterdump())
    assert key not in dump
    assert hashlib.sha256(key.encode()).hexdigest() in dump


# --- the store's sessions (the console's store panel) ---------------------------------
async def _store_with_history(server, api):
    """A store whose first session Omar handled and closed, and whose current
    one Dana holds: ``(store, keys, (earlier id, current id))``."""
    store, store_key = await make_store(server)
    _, dana = await make_admin(server, "Dana")
    _, omar = await make_admin(server, "Omar")
    _, lena = await make_admin(server, "Lena")
    earlier = await open_session(api, store_key, "first visit")
    await api.post("/admin/session/claim/", omar, {"session_id": earlier["id"]})
    await api.post("/admin/session/close/", omar, {"session_id": earlier["id"]})
    current = await open_session(api, store_key, "back again")
    assert current["id"] != earlier["id"]
    await api.post("/admin/session/claim/", dana, {"session_id": current["id"]})
    keys = {"store": store_key, "dana": dana, "omar": omar, "lena": lena}
    return store, keys, (earlier["id"], current["id"])


@pytest.mark.gen_test
async def test_the_admin_holding_a_stores_session_lists_all_its_sessions_newest_first(server, api):
    store, keys, (earlier, current) = await _store_with_history(server, api)
    reply = await api.get(f"/admin/stores/{store.id}/sessions/", keys["dana"])
    assert reply.status == 200
    assert [(s["id"], s["status"]) for s in reply.json["results"]] == [
        (current, "claimed"),
        (earlier, "closed"),
    ]
    assert reply.json["next"] is None
    assert set(reply.json["results"][1]) == {
        "id",
        "store_id",
        "admin_id",
        "status",
        "last_message_at",
        "created",
        "updated",
        "store",
    }
    # paged like My Sessions: an opaque cursor in `next`
    first = await api.get(f"/admin/stores/{store.id}/sessions/?limit=1", keys["dana"])
    assert [s["id"] for s in first.json["results"]] == [current]
    path = first.json["next"].split("/v1/chat", 1)[1]
    second = await api.get(path, keys["dana"])
    assert [s["id"] for s in second.json["results"]] == [earlier]
    assert second.json["next"] is None
    # and the earlier session, which Omar handled, opens read-only for Dana
    view = await api.get(f"/admin/session/{earlier}/", keys["dana"])
    assert view.status == 200 and view.json["messages"][0]["body"] == "first visit"
    write = await api.post("/admin/message/", keys["dana"], {"session_id": earlier, "body": "x"})
    assert write.status in (403, 409)


@pytest.mark.gen_test
async def test_a_stores_sessions_are_refused_to_everyone_else_in_the_order_of_checks(server, api):
    store, keys, (earlier, _) = await _store_with_history(server, api)
    path = f"/admin/stores/{store.id}/sessions/"
    no_key = await api.get(path)
    assert (no_key.status, no_key.json) == (
        401,
        {"detail": "Authentication credentials were not provided."},
    )
    bad_key = await api.get(path, "0" * 40)
    assert (bad_key.status, bad_key.json) == (401, {"detail": "Invalid token."})
    cases = {
        "store key": await api.get(path, keys["store"]),
        "another admin": await api.get(path, keys["lena"]),
        "the admin who handled an earlier one": await api.get(path, keys["omar"]),
    }
    assert {k: (r.status, r.json) for k, r in cases.items()} == {
        k: (403, NO_PERMISSION) for k in cases
    }
    assert (await api.get(f"/admin/session/{earlier}/", keys["lena"])).status == 403
    unknown = await api.get("/admin/stores/9999/sessions/", keys["dana"])
    assert (unknown.status, unknown.json) == (404, {"detail": "Not found."})
    huge = await api.get("/admin/stores/99999999999999999999/sessions/", keys["dana"])
    assert huge.status == 404
    bad_limit = await api.get(path + "?limit=0", keys["dana"])
    assert bad_limit.status == 400 and "limit" in bad_limit.json
    bad_cursor = await api.get(path + "?cursor=nope", keys["dana"])
    assert bad_cursor.status == 404
    post = await api.post(path, keys["dana"], {})
    assert post.status == 405


@pytest.mark.gen_test
async def test_nobody_reads_a_stores_sessions_while_it_waits_in_the_queue_or_after_a_close(
    server, api
):
    store, keys, (_, current) = await _store_with_history(server, api)
    path = f"/admin/stores/{store.id}/sessions/"
    await api.post("/admin/session/release/", keys["dana"], {"session_id": current})
    assert (await api.get(path, keys["dana"])).status == 403  # open: nobody holds it
    await api.post("/admin/session/claim/", keys["dana"], {"session_id": current})
    await api.post("/admin/session/close/", keys["dana"], {"session_id": current})
    assert (await api.get(path, keys["dana"])).status == 403  # no current session


@pytest.mark.gen_test
async def test_get_session_says_how_far_each_side_has_read(server, api):
    _store, keys, (_, current) = await _store_with_history(server, api)
    await api.post("/admin/message/", keys["dana"], {"session_id": current, "body": "hi"})
    view = await api.get(f"/admin/session/{current}/", keys["dana"])
    assert view.json["read"] == {"store": 0, "admin": 0}
    await api.post("/store/session/read/", keys["store"], {"session_id": current, "seq": 3})
    await api.post("/admin/session/read/", keys["dana"], {"session_id": current, "seq": 1})
    view = await api.get(f"/admin/session/{current}/", keys["dana"])
    assert view.json["read"] == {"store": 3, "admin": 1}
    assert (await api.get("/store/session/", keys["store"])).json["read"] == view.json["read"]
