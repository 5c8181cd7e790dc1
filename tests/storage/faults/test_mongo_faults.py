"""Faults injected into the wire server (``configureFailPoint`` ``failCommand``,
aimed with ``appName`` at the chat server's client only) at every step of a
claim, an admin's message, a store's first message (which opens its session),
a release and a close, failing once and twice; and a step-down in the middle of a claim race.

A step is the n-th command of its name that the request sends (``skip`` n).
Every step gets a fault, the five kinds taking turns along the steps, and
every kind hits every request's commit (where the outcome can be unknown).

After each fault: the client got success or 503 with Retry-After (never a
500), a retry succeeds once the database is back, and the database holds no
half-done change (tests/mongo_checks.py: seq contiguous, no client_id twice,
every change with its system message and event, each admin's count right).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.helpers import make_admin, make_store, open_session
from tests.mongo_checks import assert_consistent

# The commands each request sends, in order (read off with command
# monitoring): the key's lookup (stores, then admins; the node's memory of
# keys is off here, see tests/storage/faults/conftest.py), a read of the session (a
# repeated client_id is refused by its unique index, not read first), then
# its transaction (storage/mongo_sessions.py,
# storage/mongo_messages.py). "fam" is findAndModify; a message's insert
# carries its event. Ids come from blocks reserved outside the transaction
# (storage/mongo_ids.py), which the set-up of each case has already done.
_HAND_BACK = ["find", "find", "fam", "update", "fam", "insert", "insert", "commitTransaction"]
COMMANDS = {
    "claim": ["find", "find", "find", "fam", "fam", "insert", "fam", "insert", "commitTransaction"],
    "admin_message": ["find", "find", "fam", "insert", "commitTransaction"],
    "store_message": [
        "find",
        "find",
        "fam",
        "find",
        "insert",
        "insert",
        "fam",
        "insert",
        "commitTransaction",
    ],
    "release": _HAND_BACK,
    "close": _HAND_BACK,
}
FAULTS: dict[str, dict[str, Any]] = {
    "closeConnection": {"closeConnection": True},
    "ShutdownInProgress-91": {"errorCode": 91},
    "PrimarySteppedDown-189": {"errorCode": 189},
    "InterruptedAtShutdown-11600": {"errorCode": 11600},
    "writeConcernError-64": {
        "writeConcernError": {"code": 64, "errmsg": "waiting for replication timed out"}
    },
}


def steps(op: str) -> list[tuple[str, int]]:
    """``(command, how many of that name come before it)`` for each command."""
    seen: dict[str, int] = {}
    result = []
    for name in COMMANDS[op]:
        name = "findAndModify" if name == "fam" else name
        result.append((name, seen.get(name, 0)))
        seen[name] = seen.get(name, 0) + 1
    return result


def steps_for(op: str, fault: str) -> list[tuple[str, int]]:
    kind = list(FAULTS).index(fault)
    every = steps(op)
    return [
        step
        for i, step in enumerate(every)
        if i % len(FAULTS) == kind or step[0] == "commitTransaction"
    ]


class Chat:
    """One fault case's people: a store with a session, and its admin."""

    def __init__(self, server, api):
        self.server, self.api = server, api

    async def prepare(self, op: str) -> None:
        _, self.store_key = await make_store(self.server)
        _, self.admin_key = await make_admin(self.server)
        if op == "store_message":
            # Another store's first message: this process has its id blocks
            # for sessions, messages and events before the case's own.
            await open_session(self.api, (await make_store(self.server))[1], "warm-up")
            return
        self.sid = (await open_session(self.api, self.store_key, "help"))["id"]
        if op != "claim":
            reply = await self.claim()
            assert reply.status == 200, reply

    async def claim(self):
        return await self.api.post(
            "/admin/session/claim/", self.admin_key, {"session_id": self.sid}
        )

    async def run(self, op: str):
        """The request under test; repeating it is the client's retry."""
        if op == "claim":
            return await self.claim()
        if op == "admin_message":
            return await self.api.post(
                "/admin/message/",
                self.admin_key,
                {"session_id": self.sid, "body": "reply", "client_id": "a-1"},
            )
        if op == "store_message":
            return await self.api.post(
                "/store/message/", self.store_key, {"body": "first", "client_id": "s-1"}
            )
        path = {"release": "/admin/session/release/", "close": "/admin/session/close/"}[op]
        return await self.api.post(path, self.admin_key, {"session_id": self.sid})


def assert_success_or_retry_later(reply) -> None:
    assert reply.status in (200, 201) or (
        reply.status == 503 and reply.headers.get("Retry-After")
    ), reply


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("op", list(COMMANDS))
@pytest.mark.gen_test(timeout=60)
async def test_a_fault_at_any_step_leaves_the_change_whole_or_absent_and_a_retry_succeeds(
    op, fault, server, api, control, app_name
):
    db = server.raw_storage.db
    for command, skip in steps_for(op, fault):
        for times in (1, 2):
            chat = Chat(server, api)
            await chat.prepare(op)
            await control.admin.command(
                {
                    "configureFailPoint": "failCommand",
                    "mode": {"skip": skip, "times": times},
                    "data": {"failCommands": [command], "appName": app_name, **FAULTS[fault]},
                }
            )
            first = await chat.run(op)
            await control.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
            assert_success_or_retry_later(first)
            again = await chat.run(op)
            if first.status == 200 and op == "release":
                assert again.status == 403  # released already: the admin holds nothing
            else:
                assert again.status in (200, 201), (command, times, first, again)
            if op in ("admin_message", "store_message") and first.status == 201:
                assert again.status == 200 and again.json["id"] == first.json["id"]
            await assert_consistent(db)


@pytest.mark.parametrize("fault", ["closeConnection", "writeConcernError-64"])
@pytest.mark.parametrize("op", list(COMMANDS))
@pytest.mark.gen_test(timeout=60)
async def test_a_commit_failing_past_the_deadline_answers_503_and_the_retry_finds_the_outcome(
    op, fault, server, api, control, app_name
):
    # The commit never gets through (closeConnection), or it is applied each
    # time but never confirmed (writeConcernError): either way the outcome is
    # unknown to the server when the deadline passes.
    chat = Chat(server, api)
    await chat.prepare(op)
    await control.admin.command(
        {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": {"failCommands": ["commitTransaction"], "appName": app_name, **FAULTS[fault]},
        }
    )
    first = await chat.run(op)
    await control.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    assert first.status == 503 and first.headers["Retry-After"], first
    again = await chat.run(op)
    applied = fault == "writeConcernError-64"
    expected = {
        "claim": 200,
        "admin_message": 200 if applied else 201,
        "store_message": 200 if applied else 201,
        "close": 200,
        "release": 403 if applied else 200,
    }
    assert again.status == expected[op], again
    await assert_consistent(server.raw_storage.db)


@pytest.mark.gen_test(timeout=60)
async def test_a_step_down_during_a_claim_race_leaves_one_holder_per_session(
    server, api, control, app_name
):
    # Five sessions, each raced by ten admins; the database steps down while
    # the claims are going through. Each claim's commit is held on the server
    # for a moment, so the step-down lands while they are in flight: the
    # changes of one process run in parallel, and without the hold all fifty
    # could be answered before the step-down (seen once in make test).
    sids = [
        (await open_session(api, (await make_store(server, f"S{i}"))[1]))["id"] for i in range(5)
    ]
    admin_keys = [(await make_admin(server, f"A{i}"))[1] for i in range(10)]
    race = [(sid, key) for sid in sids for key in admin_keys]

    async def claim(sid, key):
        return await api.post("/admin/session/claim/", key, {"session_id": sid})

    await control.admin.command(
        {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": {
                "failCommands": ["commitTransaction"],
                "appName": app_name,
                "blockConnection": True,
                "blockTimeMS": 600,
            },
        }
    )
    claims = [asyncio.ensure_future(claim(*pair)) for pair in race]
    await asyncio.sleep(0.3)  # the first claims are held in their commit
    await control.admin.command("replSetStepDown", 2, force=True)
    replies = await asyncio.gather(*claims)
    await control.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    for reply in replies:
        assert reply.status in (200, 409) or (
            reply.status == 503 and reply.headers.get("Retry-After")
        ), reply
    assert 503 in {r.status for r in replies}, "the step-down came too late to matter"
    await asyncio.sleep(2.5)  # primary again
    final = [
        await claim(*pair) if r.status == 503 else r for pair, r in zip(race, replies, strict=True)
    ]
    assert {r.status for r in final} <= {200, 409}
    for sid in sids:
        won = [key for (s, key), r in zip(race, final, strict=True) if s == sid and r.status == 200]
        assert len(won) == 1, (sid, won)
        history = await api.get(f"/admin/session/{sid}/", won[0])
        assert [m.get("event") for m in history.json["messages"]] == [None, "admin_connected"]
    await assert_consistent(server.raw_storage.db)
