"""The document's OpenAPI ``links`` (issue 20): every operation that creates or
returns a session or a message links to every operation taking its id; each
link names real fields on both ends; and following the links alone, a client
walks the workflow on a live server: open, claim, message, read, transfer,
release, claim again, close."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from handlers.schema import DOCUMENT_PATH
from tests.helpers import make_admin, make_store

with open(DOCUMENT_PATH, encoding="utf-8") as f:
    DOCUMENT = yaml.safe_load(f)

OPERATIONS = {
    op["operationId"]: (path, method, op)
    for path, item in DOCUMENT["paths"].items()
    for method, op in item.items()
    if isinstance(op, dict) and "operationId" in op
}
# The operations that return a session or a message, and those that take a session id.
PRODUCERS = [
    "sendStoreMessage",
    "sendAdminMessage",
    "claimSession",
    "releaseSession",
    "closeSession",
    "transferSession",
    "getSession",
    "getStoreSession",
]
TAKERS = [
    "getSession",
    "claimSession",
    "sendAdminMessage",
    "markReadAdmin",
    "markReadStore",
    "transferSession",
    "releaseSession",
    "closeSession",
]
EXPRESSION = "$response.body#"


def resolve(node: dict) -> dict:
    """Follow ``$ref``s within the document."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def links_of(operation_id: str) -> dict[str, dict[str, dict]]:
    """``{status: {link name: link}}`` of an operation's responses."""
    _, _, op = OPERATIONS[operation_id]
    return {
        status: resolve(response).get("links", {}) for status, response in op["responses"].items()
    }


def schema_has(schema: dict, pointer: str) -> bool:
    """Whether ``pointer`` (``/a/0/b``) names a property the schema declares."""
    for part in pointer.strip("/").split("/"):
        schema = resolve(schema)
        if part.isdigit():
            schema = schema["items"]
        elif part in schema.get("properties", {}):
            schema = schema["properties"][part]
        else:
            return False
    return True


def expressions(link: dict) -> dict[str, str]:
    """``{target field: expression}`` of a link, body fields and parameters alike."""
    return {**link.get("parameters", {}), **link.get("requestBody", {})}


def test_every_producer_links_to_every_operation_taking_its_id():
    for producer in PRODUCERS:
        for status, links in links_of(producer).items():
            if status.startswith("2"):
                targets = {link["operationId"] for link in links.values()}
                assert sorted(set(TAKERS) - targets) == [], (producer, status)


def request_fields(target: dict) -> set[str]:
    """The properties of an operation's JSON request body (none without one)."""
    if "requestBody" not in target:
        return set()
    body = resolve(target["requestBody"])["content"]["application/json"]["schema"]
    return set(resolve(body)["properties"])


def test_every_link_names_a_field_its_source_returns_and_its_target_takes():
    count = 0
    for source, (_, _, op) in OPERATIONS.items():
        for status, links in links_of(source).items():
            if not links:
                continue
            returned = resolve(op["responses"][status])["content"]["application/json"]["schema"]
            for name, link in links.items():
                _, _, target = OPERATIONS[link["operationId"]]
                assert set(link.get("requestBody", {})) <= request_fields(target), (source, name)
                params = {resolve(p)["name"] for p in target.get("parameters", [])}
                assert set(link.get("parameters", {})) <= params, (source, name)
                for expression in expressions(link).values():
                    assert expression.startswith(EXPRESSION), (source, name, expression)
                    pointer = expression[len(EXPRESSION) :]
                    assert schema_has(returned, pointer), (source, status, name, pointer)
                    count += 1
    assert count > 50


def follow(link: dict, response: dict) -> tuple[dict, dict]:
    """The ``(query/path parameters, body)`` a link makes of a response body."""

    def value(expression: str) -> Any:
        node: Any = response
        for part in expression[len(EXPRESSION) :].strip("/").split("/"):
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    return (
        {k: value(v) for k, v in link.get("parameters", {}).items()},
        {k: value(v) for k, v in link.get("requestBody", {}).items()},
    )


async def call(api, keys, operation_id: str, params: dict, body: dict) -> Any:
    """Call an operation with the key its ``security`` names."""
    path, method, op = OPERATIONS[operation_id]
    scheme = next(iter(op["security"][0]))
    key = keys[scheme]
    path = path.replace("/v1/chat", "", 1)
    for name in list(params):
        if "{" + name + "}" in path:
            path = path.replace("{" + name + "}", str(params.pop(name)))
    if params:
        path += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    reply = await (api.get(path, key) if method == "get" else api.post(path, key, body))
    assert reply.status in (200, 201), (operation_id, reply)
    return reply.json


@pytest.mark.gen_test
async def test_following_the_links_alone_walks_the_workflow(server, api):
    _, admin_key = await make_admin(server, "Dana")
    other, lee_key = await make_admin(server, "Lee")
    _, store_key = await make_store(server)
    keys = {"AdminToken": admin_key, "StoreToken": store_key}

    async def step(source: str, status: str, response: dict, link_name: str, **fields: Any) -> dict:
        link = links_of(source)[status][link_name]
        params, body = follow(link, response)
        return await call(api, keys, link["operationId"], params, {**body, **fields})

    opened = await call(api, keys, "sendStoreMessage", {}, {"body": "payouts stopped"})
    claimed = await step("sendStoreMessage", "201", opened, "ClaimSession")
    assert claimed["status"] == "claimed"
    message = await step("claimSession", "200", claimed, "SendAdminMessage", body="looking")
    read = await step("sendAdminMessage", "201", message, "MarkReadStore")
    assert read == {"session_id": opened["session_id"], "seq": message["seq"]}
    await step("sendAdminMessage", "201", message, "MarkReadAdmin")
    moved = await step("claimSession", "200", claimed, "TransferSession", admin_id=other.id)
    assert moved["admin_id"] == other.id
    # Lee holds it now: Lee releases it, and Dana claims it back from the release.
    keys["AdminToken"] = lee_key
    released = await step("transferSession", "200", moved, "ReleaseSession")
    assert released["status"] == "open"
    keys["AdminToken"] = admin_key
    again = await step("releaseSession", "200", released, "ClaimSession")
    closed = await step("claimSession", "200", again, "CloseSession")
    assert closed["status"] == "closed"
    history = await step("closeSession", "200", closed, "GetSession")
    events = [m.get("event") for m in history["messages"] if m["sender"] == "system"]
    assert events == [
        "admin_connected",
        "session_transferred",
        "session_released",
        "admin_connected",
        "session_closed",
    ], events
