"""Every REST row of API.md's error table, over a real server and SQLite file."""

from __future__ import annotations

import pytest

from tests.helpers import make_admin, make_store, open_session

ADMIN_POSTS = [
    "/admin/session/claim/",
    "/admin/session/release/",
    "/admin/session/close/",
    "/admin/message/",
]
ADMIN_GETS = ["/admin/sessions/open/", "/admin/sessions/mine/", "/admin/session/1/"]
STORE_ENDPOINTS = [("POST", "/store/message/"), ("GET", "/store/session/")]
ALL_ENDPOINTS = (
    [("POST", p) for p in ADMIN_POSTS] + [("GET", p) for p in ADMIN_GETS] + STORE_ENDPOINTS
)
NO_PERMISSION = {"detail": "You do not have permission to perform this action."}


@pytest.mark.gen_test
async def test_every_endpoint_without_a_key_answers_401_not_provided(api):
    for method, path in ALL_ENDPOINTS:
        reply = await api.call(method, path, body={} if method == "POST" else None)
        assert reply.status == 401, path
        assert reply.json == {"detail": "Authentication credentials were not provided."}
        assert reply.headers["WWW-Authenticate"] == "Token"


@pytest.mark.gen_test
async def test_every_endpoint_with_an_unknown_key_answers_401_invalid_token(api):
    for method, path in ALL_ENDPOINTS:
        reply = await api.call(method, path, "0" * 40, body={} if method == "POST" else None)
        assert (reply.status, reply.json) == (401, {"detail": "Invalid token."}), path


@pytest.mark.gen_test
async def test_a_store_key_on_admin_endpoints_answers_403(server, api):
    _, store_key = await make_store(server)
    for method, path in [("POST", p) for p in ADMIN_POSTS] + [("GET", p) for p in ADMIN_GETS]:
        reply = await api.call(
            method, path, store_key, body={"session_id": 1} if method == "POST" else None
        )
        assert (reply.status, reply.json) == (403, NO_PERMISSION), path


@pytest.mark.gen_test
async def test_an_admin_key_on_store_endpoints_answers_403(server, api):
    _, admin_key = await make_admin(server)
    for method, path in STORE_ENDPOINTS:
        reply = await api.call(
            method, path, admin_key, body={"body": "hi"} if method == "POST" else None
        )
        assert (reply.status, reply.json) == (403, NO_PERMISSION), path


@pytest.mark.parametrize(
    "value, message",
    [
        (True, "A valid integer is required."),
        ("5", "A valid integer is required."),
        (5.5, "A valid integer is required."),
        (-1, "Ensure this value is greater than or equal to 1."),
        (0, "Ensure this value is greater than or equal to 1."),
        (None, "This field may not be null."),
    ],
)
@pytest.mark.gen_test
async def test_each_invalid_session_id_answers_400_on_every_admin_post(server, api, value, message):
    _, admin_key = await make_admin(server)
    for path in ADMIN_POSTS:
        reply = await api.post(path, admin_key, {"session_id": value, "body": "hi"})
        assert (reply.status, reply.json) == (400, {"session_id": [message]}), path


@pytest.mark.gen_test
async def test_a_missing_session_id_answers_400_field_required(server, api):
    _, admin_key = await make_admin(server)
    for path in ADMIN_POSTS:
        reply = await api.post(path, admin_key, {"body": "hi"})
        assert reply.status == 400
        assert reply.json == {"session_id": ["This field is required."]}, path


@pytest.mark.gen_test
async def test_malformed_json_answers_400_parse_error(server, api):
    _, admin_key = await make_admin(server)
    _, store_key = await make_store(server)
    for path, key in [(p, admin_key) for p in ADMIN_POSTS] + [("/store/message/", store_key)]:
        reply = await api.post(path, key, raw='{"session_id": 1')
        assert reply.status == 400, path
        assert reply.json["detail"].startswith("JSON parse error - "), reply.json


@pytest.mark.gen_test
async def test_a_json_body_that_is_not_an_object_answers_400(server, api):
    _, admin_key = await make_admin(server)
    reply = await api.post("/admin/session/claim/", admin_key, [1])
    assert reply.status == 400
    assert reply.json == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got list."]
    }


@pytest.mark.gen_test
async def test_message_body_blank_missing_wrong_type_or_too_long_answers_400(server, api):
    _, store_key = await make_store(server)
    cases = [
        ({"body": "   "}, {"body": ["This field may not be blank."]}),
        ({}, {"body": ["This field is required."]}),
        ({"body": 12}, {"body": ["Not a valid string."]}),
        (
            {"body": "x" * 10_001},
            {"body": ["Ensure this field has no more than 10000 characters."]},
        ),
        (
            {"body": "ok", "client_id": "c" * 65},
            {"client_id": ["Ensure this field has no more than 64 characters."]},
        ),
    ]
    for body, errors in cases:
        reply = await api.post("/store/message/", store_key, body)
        assert (reply.status, reply.json) == (400, errors), body
    # nothing was stored by any of them
    assert (await api.get("/store/session/", store_key)).status == 404


@pytest.mark.gen_test
async def test_no_such_session_answers_404_everywhere(server, api):
    _, admin_key = await make_admin(server)
    for path in ADMIN_POSTS:
        reply = await api.post(path, admin_key, {"session_id": 999, "body": "hi"})
        assert (reply.status, reply.json) == (404, {"detail": "Not found."}), path
    reply = await api.get("/admin/session/999/", admin_key)
    assert (reply.status, reply.json) == (404, {"detail": "Not found."})
    _, store_key = await make_store(server)
    reply = await api.get("/store/session/", store_key)
    assert (reply.status, reply.json) == (404, {"detail": "Not found."})


@pytest.mark.gen_test
async def test_wrong_method_answers_405_in_drf_words(server, api):
    _, admin_key = await make_admin(server)
    reply = await api.get("/admin/session/claim/", admin_key)
    assert (reply.status, reply.json) == (405, {"detail": 'Method "GET" not allowed.'})
    reply = await api.call("DELETE", "/admin/sessions/open/", admin_key)
    assert (reply.status, reply.json) == (405, {"detail": 'Method "DELETE" not allowed.'})


@pytest.mark.gen_test
async def test_a_body_over_the_limit_answers_413_and_stores_nothing(server, api):
    _, store_key = await make_store(server)
    reply = await api.post("/store/message/", store_key, {"body": "x" * 70_000})
    assert (reply.status, reply.json) == (413, {"detail": "Request body too large."})
    assert (await api.get("/store/session/", store_key)).status == 404


@pytest.mark.gen_test
async def test_both_path_forms_are_accepted(server, api):
    _, admin_key = await make_admin(server)
    assert (await api.get("/admin/sessions/open/", admin_key)).status == 200
    assert (await api.get("/admin/sessions/open", admin_key)).status == 200


@pytest.mark.gen_test
async def test_claim_of_a_session_held_by_another_admin_answers_409(server, api):
    _, store_key = await make_store(server)
    _, dana = await make_admin(server, "Dana")
    _, omar = await make_admin(server, "Omar")
    session = await open_session(api, store_key)
    assert (
        await api.post("/admin/session/claim/", dana, {"session_id": session["id"]})
    ).status == 200
    reply = await api.post("/admin/session/claim/", omar, {"session_id": session["id"]})
    assert (reply.status, reply.json) == (409, {"detail": "Session already claimed."})


@pytest.mark.gen_test
async def test_writes_to_a_closed_session_answer_409_closed(server, api):
    _, store_key = await make_store(server)
    _, dana = await make_admin(server)
    session = await open_session(api, store_key)
    sid = {"session_id": session["id"]}
    await api.post("/admin/session/claim/", dana, sid)
    assert (await api.post("/admin/session/close/", dana, sid)).status == 200
    closed = {"detail": "Session is closed."}
    for path in ["/admin/session/claim/", "/admin/session/release/"]:
        reply = await api.post(path, dana, sid)
        assert (reply.status, reply.json) == (409, closed), path
    reply = await api.post("/admin/message/", dana, {**sid, "body": "late"})
    assert (reply.status, reply.json) == (409, closed)


class TestRateLimit:
    @pytest.fixture
    def overrides(self):
        return {"limits": {"rate_per_sec": 0.5, "burst": 2}}

    @pytest.mark.gen_test
    async def test_requests_past_the_burst_answer_429_with_retry_after(self, server, api):
        _, admin_key = await make_admin(server)
        statuses = [(await api.get("/admin/sessions/open/", admin_key)) for _ in range(3)]
        assert [r.status for r in statuses] == [200, 200, 429]
        assert statuses[2].headers["Retry-After"] == "2"
        assert statuses[2].json == {
            "detail": "Request was throttled. Expected available in 2 seconds."
        }


@pytest.mark.gen_test
async def test_a_chunked_body_over_the_limit_answers_413_and_stores_nothing(server, api):
    """No Content-Length to refuse early: the streamed body is counted as it comes."""
    import tornado.httpclient

    _, store_key = await make_store(server)

    async def produce(write):
        await write(b'{"body": "')
        for _ in range(10):
            await write(b"x" * 10_000)
        await write(b'"}')

    response = await api.client.fetch(
        tornado.httpclient.HTTPRequest(
            api.base_url + "/store/message/",
            method="POST",
            body_producer=produce,
            headers={"Authorization": f"Token {store_key}"},
        ),
        raise_error=False,
    )
    assert response.code == 413
    assert (await api.get("/store/session/", store_key)).status == 404
