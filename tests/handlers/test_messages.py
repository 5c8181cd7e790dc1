"""Messages: seq order under concurrency, idempotency, history and list paging."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import claimed_session, make_admin, make_store, open_session


@pytest.mark.gen_test(timeout=60)
async def test_two_hundred_concurrent_sends_get_seq_one_to_n_without_gap_or_repeat(server, api):
    store_key, admin_key, session = await claimed_session(server, api, "first")
    sends = [api.post("/store/message/", store_key, {"body": f"s{i}"}) for i in range(100)]
    sends += [
        api.post("/admin/message/", admin_key, {"session_id": session["id"], "body": f"a{i}"})
        for i in range(100)
    ]
    replies = await asyncio.gather(*sends)
    assert {r.status for r in replies} == {201}
    acked = sorted(r.json["seq"] for r in replies)
    assert acked == list(range(3, 203))  # 1: the first message, 2: admin_connected
    history = await api.get(f"/admin/session/{session['id']}/?limit=1000", admin_key)
    assert [m["seq"] for m in history.json["messages"]] == list(range(1, 203))
    assert {m["session_id"] for m in history.json["messages"]} == {session["id"]}


@pytest.mark.gen_test
async def test_a_repeated_client_id_stores_one_message_and_returns_it_both_times(server, api):
    _, store_key = await make_store(server)
    first = await api.post("/store/message/", store_key, {"body": "hi", "client_id": "c-1"})
    again = await api.post("/store/message/", store_key, {"body": "hi", "client_id": "c-1"})
    assert (first.status, again.status) == (201, 200)
    assert again.json == first.json
    history = await api.get("/store/session/", store_key)
    assert [m["client_id"] for m in history.json["messages"]] == ["c-1"]


@pytest.mark.gen_test
async def test_concurrent_sends_with_one_client_id_store_it_once(server, api):
    _, store_key = await make_store(server)
    replies = await asyncio.gather(
        *[
            api.post("/store/message/", store_key, {"body": "hi", "client_id": "same"})
            for _ in range(20)
        ]
    )
    assert sorted(r.status for r in replies) == [200] * 19 + [201]
    assert len({r.json["id"] for r in replies}) == 1
    history = await api.get("/store/session/", store_key)
    assert len(history.json["messages"]) == 1


@pytest.mark.gen_test
async def test_a_client_id_retried_after_close_returns_the_old_message_and_opens_nothing(
    server, api
):
    _, store_key = await make_store(server)
    _, admin_key = await make_admin(server)
    first = await api.post("/store/message/", store_key, {"body": "hi", "client_id": "k"})
    sid = {"session_id": first.json["session_id"]}
    await api.post("/admin/session/claim/", admin_key, sid)
    await api.post("/admin/session/close/", admin_key, sid)
    retry = await api.post("/store/message/", store_key, {"body": "hi", "client_id": "k"})
    assert retry.status == 200 and retry.json["id"] == first.json["id"]
    assert retry.json["session"]["status"] == "closed"
    assert (await api.get("/store/session/", store_key)).status == 404  # nothing opened


@pytest.mark.gen_test
async def test_client_ids_are_per_sender_not_global(server, api):
    _, key_a = await make_store(server, "A")
    _, key_b = await make_store(server, "B")
    a = await api.post("/store/message/", key_a, {"body": "a", "client_id": "x"})
    b = await api.post("/store/message/", key_b, {"body": "b", "client_id": "x"})
    assert (a.status, b.status) == (201, 201) and a.json["id"] != b.json["id"]


@pytest.mark.gen_test
async def test_after_a_close_the_stores_next_message_opens_a_new_session(server, api):
    store_key, admin_key, old = await claimed_session(server, api, "one")
    await api.post("/admin/session/close/", admin_key, {"session_id": old["id"]})
    reply = await api.post("/store/message/", store_key, {"body": "two"})
    assert reply.status == 201
    assert reply.json["session"]["id"] != old["id"] and reply.json["seq"] == 1
    assert reply.json["session"]["status"] == "open"


@pytest.mark.gen_test
async def test_history_pages_with_after_seq_limit_and_has_more(server, api):
    _, store_key = await make_store(server)
    for i in range(5):
        await api.post("/store/message/", store_key, {"body": f"m{i}"})
    page = (await api.get("/store/session/?after_seq=1&limit=2", store_key)).json
    assert [m["seq"] for m in page["messages"]] == [2, 3] and page["has_more"] is True
    page = (await api.get("/store/session/?after_seq=3&limit=2", store_key)).json
    assert [m["seq"] for m in page["messages"]] == [4, 5] and page["has_more"] is False
    bad = await api.get("/store/session/?after_seq=x", store_key)
    assert (bad.status, bad.json) == (400, {"after_seq": ["A valid integer is required."]})


@pytest.mark.gen_test
async def test_the_queue_pages_by_cursor_without_skipping_or_repeating_while_it_moves(server, api):
    _, admin_key = await make_admin(server)
    _, other_admin = await make_admin(server, "Other")
    ids = [
        (await open_session(api, (await make_store(server, f"S{i}"))[1]))["id"] for i in range(5)
    ]
    page1 = (await api.get("/admin/sessions/open/?limit=2", admin_key)).json
    assert [s["id"] for s in page1["results"]] == ids[:2]
    # the queue moves: someone claims a session already seen, and a new one arrives
    await api.post("/admin/session/claim/", other_admin, {"session_id": ids[0]})
    late = (await open_session(api, (await make_store(server, "Late"))[1]))["id"]
    seen = [s["id"] for s in page1["results"]]
    next_url = page1["next"]
    while next_url:
        page = (await api.get(next_url.split("/v1/chat", 1)[1], admin_key)).json
        seen += [s["id"] for s in page["results"]]
        next_url = page["next"]
    assert seen == [*ids, late]


@pytest.mark.gen_test
async def test_a_garbled_cursor_answers_404_invalid(server, api):
    _, admin_key = await make_admin(server)
    reply = await api.get("/admin/sessions/open/?cursor=nonsense", admin_key)
    assert reply.status == 404


@pytest.mark.gen_test
async def test_my_sessions_lists_latest_activity_first(server, api):
    _, admin_key = await make_admin(server)
    keys = [(await make_store(server, f"S{i}"))[1] for i in range(3)]
    ids = [(await open_session(api, k))["id"] for k in keys]
    for sid in ids:
        await api.post("/admin/session/claim/", admin_key, {"session_id": sid})
    await api.post("/store/message/", keys[0], {"body": "still there?"})
    mine = (await api.get("/admin/sessions/mine/?limit=2", admin_key)).json
    assert [s["id"] for s in mine["results"]] == [ids[0], ids[2]]
    rest = (await api.get(mine["next"].split("/v1/chat", 1)[1], admin_key)).json
    assert [s["id"] for s in rest["results"]] == [ids[1]] and rest["next"] is None
