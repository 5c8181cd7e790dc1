"""Faults injected into the wire server at the steps of a transfer (one
transaction on MongoDB): the client gets 200 or 503 with Retry-After, a retry
settles it, and the database holds the transfer whole or not at all (one
holder, one ``session_transferred`` message and event, counts right)."""

from __future__ import annotations

import pytest

from tests.helpers import claimed_session, make_admin
from tests.mongo_checks import assert_consistent
from tests.storage.faults.test_mongo_faults import FAULTS

# (command, how many of that name the request sends before it): the steps of
# the key lookup, the actor's read and the transfer's transaction, and a few
# beyond, so every step is hit whatever the exact count.
STEPS = (
    [("find", n) for n in range(5)]
    + [("findAndModify", n) for n in range(7)]
    + [("insert", n) for n in range(3)]
    + [("update", n) for n in range(2)]
    + [("commitTransaction", 0)]
)


async def transfer_case(server, api, name: str):
    _, dana_key, session = await claimed_session(server, api, admin_name=f"D{name}")
    omar, omar_key = await make_admin(server, f"O{name}")
    return dana_key, omar, omar_key, {"session_id": session["id"], "admin_id": omar.id}


async def assert_transferred_once(api, db, omar, omar_key, body, where) -> None:
    detail = (await api.get(f"/admin/session/{body['session_id']}/", omar_key)).json
    assert detail["admin_id"] == omar.id, where
    events = [m.get("event") for m in detail["messages"]]
    assert events.count("session_transferred") == 1, (where, events)
    await assert_consistent(db)


@pytest.mark.gen_test(timeout=180)
async def test_a_fault_at_any_step_of_a_transfer_leaves_it_whole_or_absent(
    server, api, control, app_name
):
    db = server.raw_storage.db
    fault_kinds = list(FAULTS)
    for i, (command, skip) in enumerate(STEPS):
        fault = fault_kinds[i % len(fault_kinds)]
        for times in (1, 2):
            dana_key, omar, omar_key, body = await transfer_case(server, api, f"{i}-{times}")
            await control.admin.command(
                {
                    "configureFailPoint": "failCommand",
                    "mode": {"skip": skip, "times": times},
                    "data": {"failCommands": [command], "appName": app_name, **FAULTS[fault]},
                }
            )
            first = await api.post("/admin/session/transfer/", dana_key, body)
            await control.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
            where = (command, skip, times, first)
            assert first.status == 200 or (
                first.status == 503 and first.headers.get("Retry-After")
            ), where
            again = await api.post("/admin/session/transfer/", dana_key, body)
            if first.status == 200:
                assert again.status == 403, where  # done: Dana holds it no longer
            else:
                assert again.status in (200, 403), where  # 403: it was done unanswered
            await assert_transferred_once(api, db, omar, omar_key, body, where)


@pytest.mark.parametrize("fault", ["closeConnection", "writeConcernError-64"])
@pytest.mark.gen_test(timeout=60)
async def test_a_transfer_whose_commit_fails_past_the_deadline_is_settled_by_the_retry(
    fault, server, api, control, app_name
):
    dana_key, omar, omar_key, body = await transfer_case(server, api, fault)
    await control.admin.command(
        {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": {"failCommands": ["commitTransaction"], "appName": app_name, **FAULTS[fault]},
        }
    )
    first = await api.post("/admin/session/transfer/", dana_key, body)
    await control.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    assert first.status == 503 and first.headers["Retry-After"], first
    again = await api.post("/admin/session/transfer/", dana_key, body)
    # Never committed: the retry does it. Committed but unconfirmed: it is done.
    assert again.status == (403 if fault == "writeConcernError-64" else 200), again
    await assert_transferred_once(api, server.raw_storage.db, omar, omar_key, body, fault)
