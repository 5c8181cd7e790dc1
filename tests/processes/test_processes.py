"""Real server processes: the CLI, two processes on one SQLite file, SIGKILL."""

from __future__ import annotations

import asyncio
import re
import signal

import pytest

from tests.helpers import Api, ServerProcess, create_keys, run_cli


def test_create_commands_print_the_new_key_alone_on_the_last_line(db_url):
    out = run_cli(
        "create-admin",
        "--name",
        "Dana",
        "--email",
        "d@example.com",
        env={"CHAT_STORAGE_URL": db_url},
    )
    assert re.fullmatch(r"[0-9a-f]{40}", out.splitlines()[-1])
    out = run_cli("create-store", "--name", "Tech", env={"CHAT_STORAGE_URL": db_url})
    assert re.fullmatch(r"[0-9a-f]{40}", out.splitlines()[-1])


@pytest.mark.gen_test(timeout=120)
async def test_claims_raced_across_two_processes_on_one_file_have_one_winner(
    db_url, processes, tmp_path
):
    admin_keys, store_keys = create_keys(db_url, admins=50, stores=5)
    for _ in range(2):
        processes.append(ServerProcess(db_url).start(str(tmp_path / "log")))
    apis = [Api(p.base_url + "/v1/chat") for p in processes]
    for store_key in store_keys:  # five sessions, each raced by all fifty admins
        opened = await apis[0].post("/store/message/", store_key, {"body": "help"})
        sid = opened.json["session_id"]
        replies = await asyncio.gather(
            *[
                apis[i % 2].post("/admin/session/claim/", key, {"session_id": sid})
                for i, key in enumerate(admin_keys)
            ]
        )
        assert sorted(r.status for r in replies) == [200] + [409] * 49


@pytest.mark.gen_test(timeout=120)
async def test_sends_raced_across_two_processes_keep_seq_contiguous(db_url, processes, tmp_path):
    admin_keys, store_keys = create_keys(db_url)
    for _ in range(2):
        processes.append(ServerProcess(db_url).start(str(tmp_path / "log")))
    apis = [Api(p.base_url + "/v1/chat") for p in processes]
    opened = await apis[0].post("/store/message/", store_keys[0], {"body": "0"})
    sid = opened.json["session_id"]
    await apis[1].post("/admin/session/claim/", admin_keys[0], {"session_id": sid})
    sends = []
    for i in range(100):
        sends.append(apis[i % 2].post("/store/message/", store_keys[0], {"body": f"s{i}"}))
        sends.append(
            apis[(i + 1) % 2].post(
                "/admin/message/", admin_keys[0], {"session_id": sid, "body": f"a{i}"}
            )
        )
    replies = await asyncio.gather(*sends)
    assert {r.status for r in replies} == {201}
    history = await apis[0].get(f"/admin/session/{sid}/?limit=1000", admin_keys[0])
    assert [m["seq"] for m in history.json["messages"]] == list(range(1, 203))


@pytest.mark.gen_test(timeout=120)
async def test_every_acknowledged_message_survives_a_sigkill(db_url, processes, tmp_path):
    _, store_keys = create_keys(db_url)
    proc = ServerProcess(db_url).start(str(tmp_path / "log"))
    processes.append(proc)
    api = Api(proc.base_url + "/v1/chat")
    acked = []

    async def send(i):
        reply = await api.post("/store/message/", store_keys[0], {"body": f"m{i}"})
        if reply.status == 201:
            acked.append(reply.json["id"])

    sends = [asyncio.ensure_future(send(i)) for i in range(300)]
    while len(acked) < 100:  # kill it mid-stream, with sends still in flight
        await asyncio.sleep(0.005)
    proc.signal(signal.SIGKILL)
    await asyncio.gather(*sends, return_exceptions=True)
    proc.proc.wait(10)
    restarted = ServerProcess(db_url, port=proc.port).start(str(tmp_path / "log"))
    processes.append(restarted)
    history = await Api(restarted.base_url + "/v1/chat").get(
        "/store/session/?limit=1000", store_keys[0]
    )
    stored = {m["id"] for m in history.json["messages"]}
    assert len(acked) >= 100 and set(acked) <= stored
    assert [m["seq"] for m in history.json["messages"]] == list(range(1, len(stored) + 1))


def page_size(db_url: str) -> int:
    import sqlite3

    with sqlite3.connect(db_url[len("sqlite:///") :]) as conn:
        return conn.execute("PRAGMA page_size").fetchone()[0]


@pytest.mark.gen_test(timeout=120)
async def test_a_new_database_gets_the_configured_page_size_and_an_old_one_keeps_its_own(
    db_url, tmp_path, processes
):
    _, store_keys = create_keys(db_url)  # the CLI makes the file, with the default
    assert page_size(db_url) == 1024
    other_url = f"sqlite:///{tmp_path}/made-with-4k.sqlite3"
    store_key = run_cli(
        "create-store",
        "--name",
        "S",
        env={"CHAT_STORAGE_URL": other_url, "CHAT_STORAGE__SQLITE_PAGE_SIZE": "4096"},
    ).splitlines()[-1]
    assert page_size(other_url) == 4096
    for url, key in ((db_url, store_keys[0]), (other_url, store_key)):
        proc = ServerProcess(url).start(str(tmp_path / "log"))  # the default: 1024
        processes.append(proc)
        api = Api(proc.base_url + "/v1/chat")
        sent = [await api.post("/store/message/", key, {"body": f"m{i}" * 300}) for i in range(20)]
        assert [r.status for r in sent] == [201] * 20
        history = await api.get("/store/session/?limit=100", key)
        assert [m["body"] for m in history.json["messages"]] == [f"m{i}" * 300 for i in range(20)]
        assert proc.stop() == 0
    assert (page_size(db_url), page_size(other_url)) == (1024, 4096)
