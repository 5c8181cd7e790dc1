"""The OpenAPI document (docs/openapi.yaml): valid OpenAPI 3.1, one path for
every REST route of the app and no path without one, and served as it is."""

from __future__ import annotations

import copy
import re

import jsonschema
import pytest
import tornado.web
import tornado.websocket
import yaml
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from handlers.app import ChatServer
from handlers.schema import DOCUMENT_PATH
from tests.helpers import Api, make_admin, make_store

# Routes that are not REST operations, documented in docs/api.md instead: the
# WebSockets, and the web pages (the console and the widget: static files and
# the redirects to their folders).
NOT_REST = (
    tornado.websocket.WebSocketHandler,
    tornado.web.StaticFileHandler,
    tornado.web.RedirectHandler,
)
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def load_document() -> dict:
    with open(DOCUMENT_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_the_document_is_valid_openapi_3_1():
    document = load_document()
    assert document["openapi"].startswith("3.1.")
    errors = [e.message for e in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


def test_the_validator_refuses_a_broken_document():
    # So the test above can fail: Swagger 2's "in: body" is no OpenAPI 3 parameter.
    document = copy.deepcopy(load_document())
    document["components"]["parameters"]["Cursor"]["in"] = "body"
    assert list(OpenAPIV31SpecValidator(document).iter_errors())


def media_examples(node, where="#"):
    """``(where, schema, example)`` for every example given beside a schema."""
    if isinstance(node, dict):
        if "schema" in node and ("example" in node or "examples" in node):
            if "example" in node:
                yield where, node["schema"], node["example"]
            for name, example in node.get("examples", {}).items():
                yield f"{where}/examples/{name}", node["schema"], example["value"]
        if node.get("type") == "object" and "example" in node:  # a schema's own example
            yield where, node, node["example"]
        for key, value in node.items():
            yield from media_examples(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from media_examples(value, f"{where}/{i}")


def test_every_example_in_the_document_matches_its_schema():
    document = load_document()
    examples = list(media_examples(document))
    assert len(examples) > 20
    for where, schema, example in examples:
        # The components ride along so that "#/components/..." refs resolve.
        validator = jsonschema.Draft202012Validator(
            {**schema, "components": document["components"]},
            format_checker=jsonschema.FormatChecker(),
        )
        errors = [e.message for e in validator.iter_errors(example)]
        assert errors == [], where


def rest_routes(config) -> dict[str, tuple[type, str]]:
    """``{canonical path: (handler class, route regex)}`` for every REST route,
    the path written the way the document writes it (``{}`` for a parameter)."""
    app = ChatServer(config).make_app(with_ops=True)
    routes = {}
    for rule in app.wildcard_router.rules:
        handler = rule.target
        pattern = rule.matcher.regex.pattern.rstrip("$")
        if issubclass(handler, NOT_REST):
            continue
        # Every API path is written with an optional trailing slash: "/x/?".
        path = re.sub(r"\([^)]*\)", "{}", pattern)
        path = path[:-2] + "/" if path.endswith("/?") else path
        assert "\\" not in path and "(" not in path, f"route too clever to map: {pattern}"
        routes[path] = (handler, pattern)
    return routes


def documented_paths(document: dict) -> dict[str, set[str]]:
    """``{path with {} for each parameter: methods}`` of the document."""
    return {
        re.sub(r"\{[^}]+\}", "{}", path): {m for m in item if m in METHODS}
        for path, item in document["paths"].items()
    }


def implemented_methods(handler: type) -> set[str]:
    return {m for m in METHODS if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)}


def test_every_rest_route_has_a_path_in_the_document_and_every_path_a_route(config):
    routes = rest_routes(config)
    documented = documented_paths(load_document())
    assert sorted(set(routes) - set(documented)) == [], "routes without a schema entry"
    assert sorted(set(documented) - set(routes)) == [], "schema paths without a route"
    for path, (handler, _) in routes.items():
        assert documented[path] == implemented_methods(handler), path


def test_every_documented_path_is_served_with_and_without_its_trailing_slash(config):
    routes = rest_routes(config)
    for path, (_handler, pattern) in routes.items():
        concrete = path.replace("{}", "5")
        assert re.fullmatch(pattern, concrete), (path, pattern)
        if path.startswith("/v1/"):
            assert re.fullmatch(pattern, concrete.rstrip("/")), (path, pattern)


def test_the_route_check_sees_a_route_missing_from_the_document(config):
    document = load_document()
    del document["paths"]["/v1/chat/admin/session/close/"]
    missing = set(rest_routes(config)) - set(documented_paths(document))
    assert missing == {"/v1/chat/admin/session/close/"}


@pytest.mark.gen_test
async def test_the_served_document_is_the_file_as_json_without_auth(server, api):
    document = load_document()
    for path in ("/schema/", "/schema"):
        reply = await api.get(path)
        assert reply.status == 200, reply
        assert reply.headers["Content-Type"] == "application/json"
        assert reply.json == document


@pytest.mark.gen_test
async def test_another_method_on_the_schema_gets_a_json_405(server, api):
    reply = await api.post("/schema/", body={})
    assert reply.status == 405
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.json == {"detail": 'Method "POST" not allowed.'}


@pytest.mark.gen_test
async def test_every_method_a_path_does_not_list_gets_drfs_405(server):
    """The document lists each path's methods; any other is a 405 in the shape
    of #/components/responses/MethodNotAllowed, with ``Allow``."""
    document = load_document()
    schema = {
        **document["components"]["responses"]["MethodNotAllowed"]["content"]["application/json"][
            "schema"
        ],
        "components": document["components"],
    }
    _, admin_key = await make_admin(server)
    _, store_key = await make_store(server)
    keys = {"AdminToken": admin_key, "StoreToken": store_key}
    client = Api(server.url)  # paths here start at the root: ops ones too
    for path, item in document["paths"].items():
        security = [name for req in next(iter(item.values())).get("security") or [] for name in req]
        key = keys[security[0]] if security else None
        allowed = ", ".join(m.upper() for m in METHODS if m in item)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "HEAD"):
            if method.lower() in item:
                continue
            target = path.replace("{session_id}", "1").replace("{store_id}", "1")
            reply = await client.call(
                method, target, key, raw=b"{}" if method in ("POST", "PUT", "PATCH") else None
            )
            assert reply.status == 405, (method, path, reply)
            # RFC 9110: a 405 names the methods the path has (issue 20).
            assert reply.headers["Allow"] == allowed, (method, path)
            if method == "HEAD":
                continue  # no body to read
            assert reply.headers["Content-Type"] == "application/json", (method, path)
            assert reply.json == {"detail": f'Method "{method}" not allowed.'}, (method, path)
            assert not list(jsonschema.Draft202012Validator(schema).iter_errors(reply.json))
    client.close()


@pytest.mark.gen_test
async def test_an_unknown_path_is_not_found_whatever_the_method(server):
    client = Api(server.url)
    for method in ("GET", "POST", "TRACE", "OPTIONS", "PUT"):
        reply = await client.call(
            method, "/v1/chat/nowhere/", raw=b"{}" if method in ("POST", "PUT") else None
        )
        assert (reply.status, reply.json) == (404, {"detail": "Not found."}), method
    client.close()


@pytest.mark.gen_test
async def test_the_web_pages_405s_carry_allow_too(server):
    client = Api(server.url)
    for path, allowed in (("/console/", "GET, HEAD"), ("/console", "GET")):
        reply = await client.call("POST", path, raw=b"")
        assert (reply.status, reply.headers["Allow"]) == (405, allowed), path
    client.close()


# --- the document's text rules are the server's (issue 20) --------------------------
# Every whitespace character of Python's str.strip (DRF trims with it), NUL,
# astral characters; no lone surrogates (the pattern leaves them to the prose,
# and schemathesis writes UTF-8, which cannot carry one).
_TRICKY = [chr(i) for i in range(0x3001) if chr(i).isspace()] + [
    "\x00",
    "a",
    "\U0001f600",
    "\ufeff",
    "\x85",
]


@pytest.mark.parametrize(
    "schema_name, field, limit", [("MessageBody", "body", 10_000), ("ClientId", "client_id", 64)]
)
def test_a_text_fields_pattern_accepts_exactly_what_the_server_accepts(schema_name, field, limit):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from handlers.validation import Fields

    pattern = re.compile(load_document()["components"]["schemas"][schema_name]["pattern"])

    def server_accepts(value: str) -> bool:
        fields = Fields({field: value})
        fields.text(field, limit)
        return not fields.errors

    @settings(
        max_examples=1000,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.text(st.one_of(st.sampled_from(_TRICKY), st.characters(codec="utf-8")), max_size=80))
    def agree(value):
        assert bool(pattern.search(value)) == server_accepts(value), repr(value)

    agree()
    padded = " \n" + "x" * limit + "\u3000"  # the limit counts the trimmed text
    for value in (padded, "x" * (limit + 1), "x" + " " * (limit - 2) + "y", "\x00" * 3):
        assert bool(pattern.search(value)) == server_accepts(value), value[:10]
