"""Integers as clients write them (issue 20): a JSON or msgpack number with no
fraction is an integer, as in JSON Schema and DRF's ``IntegerField``, in REST
bodies and WebSocket frames alike; ``5.5``, ``true`` and ``"5"`` are not. A
query integer is decimal digits: an empty or spaced value is a 400, and only
an absent one takes the default."""

from __future__ import annotations

import pytest

from tests.helpers import Socket, claimed_session, make_admin

NOT_INTEGER = "A valid integer is required."
TOO_LARGE = "Ensure this value is less than or equal to 9223372036854775807."


# --- REST bodies ------------------------------------------------------------------
@pytest.mark.gen_test
async def test_integer_valued_numbers_in_a_body_are_integers(server, api):
    _store_key, admin_key, session = await claimed_session(server, api)
    sid = float(session["id"])  # e.g. 1.0, sent as "1.0"
    reply = await api.post("/admin/session/claim/", admin_key, {"session_id": sid})
    assert (reply.status, reply.json["id"]) == (200, session["id"])  # the holder's repeat
    reply = await api.post("/admin/message/", admin_key, {"session_id": sid, "body": "hi"})
    assert reply.status == 201 and reply.json["session_id"] == session["id"], reply
    seq = reply.json["seq"]
    reply = await api.post(
        "/admin/session/read/", admin_key, {"session_id": sid, "seq": float(seq)}
    )
    assert (reply.status, reply.json) == (200, {"session_id": session["id"], "seq": seq})
    admin = (await api.get("/admin/sessions/mine/", admin_key)).json["results"][0]["admin_id"]
    reply = await api.post(
        "/admin/session/transfer/", admin_key, {"session_id": sid, "admin_id": float(admin)}
    )
    assert (reply.status, reply.json["admin_id"]) == (200, admin)
    # Written with an exponent, too: 1e0 is 1 (JSON numbers, whatever their spelling).
    reply = await api.post(
        "/admin/session/close/", admin_key, raw=f'{{"session_id": {session["id"]}e0}}'
    )
    assert (reply.status, reply.json["status"]) == (200, "closed"), reply


@pytest.mark.parametrize(
    "raw, message",
    [
        ("5.5", NOT_INTEGER),
        ("true", NOT_INTEGER),
        ('"5"', NOT_INTEGER),
        ("0.0", "Ensure this value is greater than or equal to 1."),
        ("-1.0", "Ensure this value is greater than or equal to 1."),
        ("1e19", TOO_LARGE),
        ("9223372036854775808.0", TOO_LARGE),
    ],
)
@pytest.mark.gen_test
async def test_numbers_with_a_fraction_other_types_and_out_of_range_keep_their_400(
    server, api, raw, message
):
    _, admin_key = await make_admin(server)
    for path in ("/admin/session/claim/", "/admin/message/", "/admin/session/read/"):
        reply = await api.post(
            path, admin_key, raw=f'{{"session_id": {raw}, "body": "hi", "seq": 1}}'
        )
        assert (reply.status, reply.json) == (400, {"session_id": [message]}), path


# --- WebSocket frames, JSON and msgpack ------------------------------------------------
@pytest.mark.parametrize("protocol", ["json", "msgpack"])
@pytest.mark.gen_test
async def test_integer_valued_numbers_in_frames_are_integers(server, api, protocol):
    _store_key, admin_key, session = await claimed_session(server, api)
    sock = await Socket.connect(server.ws_url + "/v1/chat/admin/ws/", admin_key, protocol)
    assert (await sock.recv())["type"] == "hello"
    sid = float(session["id"])
    ack = await sock.request({"type": "message", "session_id": sid, "body": "hi", "ref": 7.0})
    assert ack["type"] == "ack" and ack["message"]["session_id"] == session["id"], ack
    assert ack["ref"] == 7.0  # echoed as it came
    seq = ack["message"]["seq"]
    ack = await sock.request({"type": "read", "session_id": sid, "seq": float(seq)})
    assert (ack["type"], ack["seq"]) == ("ack", seq), ack
    ack = await sock.request({"type": "resume", "session_id": sid, "after_seq": 0.0})
    assert (ack["type"], ack["session_id"], ack["last_seq"]) == ("ack", session["id"], seq)
    refused = await sock.request({"type": "message", "session_id": sid + 0.5, "body": "x"})
    assert (refused["status"], refused["errors"]) == (400, {"session_id": [NOT_INTEGER]})
    sock.close()


@pytest.mark.parametrize("ref", [7.5, -1.0, 2.0**63])
@pytest.mark.gen_test
async def test_a_ref_with_a_fraction_or_out_of_range_is_still_refused(server, ref):
    _, admin_key = await make_admin(server)
    sock = await Socket.connect(server.ws_url + "/v1/chat/admin/ws/", admin_key, "msgpack")
    assert (await sock.recv())["type"] == "hello"
    await sock.send({"type": "ping", "ref": ref})
    # The admin's own presence frame may come first (an admin socket opening announces it).
    error = await sock.recv_type("error")
    assert (error["type"], error["status"], error["ref"]) == ("error", 400, None), error
    sock.close()


# --- query strings ------------------------------------------------------------------
@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=", "limit"),
        ("limit=%20", "limit"),
        ("limit=%205", "limit"),
        ("limit=5%20", "limit"),
        ("limit=5.0", "limit"),
        ("limit=%06", "limit"),
    ],
)
@pytest.mark.gen_test
async def test_an_empty_or_spaced_list_limit_is_a_400(server, api, query, field):
    _, admin_key = await make_admin(server)
    for path in ("/admin/sessions/open/", "/admin/sessions/mine/", "/admin/admins/"):
        reply = await api.get(f"{path}?{query}", admin_key)
        assert (reply.status, reply.json) == (400, {field: [NOT_INTEGER]}), (path, query)


@pytest.mark.gen_test
async def test_an_empty_history_parameter_is_a_400_and_an_absent_one_the_default(server, api):
    store_key, admin_key, session = await claimed_session(server, api)
    path = f"/admin/session/{session['id']}/"
    for query in ("after_seq=", "limit=", "after_seq=%20", "limit=%09"):
        field = query.split("=")[0]
        for key, where in ((admin_key, path), (store_key, "/store/session/")):
            reply = await api.get(f"{where}?{query}", key)
            assert (reply.status, reply.json) == (400, {field: [NOT_INTEGER]}), (where, query)
    reply = await api.get(path, admin_key)
    assert reply.status == 200 and [m["seq"] for m in reply.json["messages"]] == [1, 2]
    reply = await api.get(f"{path}?after_seq=0001&limit=001", admin_key)  # digits are digits
    assert reply.status == 200 and [m["seq"] for m in reply.json["messages"]] == [2]


@pytest.mark.gen_test
async def test_an_empty_cursor_is_the_first_page(server, api):
    _store_key, admin_key, session = await claimed_session(server, api)
    reply = await api.get("/admin/sessions/mine/?cursor=", admin_key)
    assert reply.status == 200 and [s["id"] for s in reply.json["results"]] == [session["id"]]
