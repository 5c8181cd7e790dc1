"""Accounts: list, rotate and revoke keys from the command line, input checks,
--demo's reuse, and sockets of a changed key closed with 4001 on every process."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time

import pytest

from actors.hub import Hub
from actors.key_watch import KeyWatch
from storage.records import Role
from tests.helpers import ROOT, Api, ServerProcess, Socket, make_admin, make_store, run_server_py
from tests.settings.test_settings import one_line_error
from tests.storage.test_storage_contract import storage  # noqa: F401  (the backends fixture)

KEY = re.compile(r"[0-9a-f]{40}")


def cli(db_url: str, *args: str):
    return run_server_py(*args, env={"CHAT_STORAGE_URL": db_url})


def new_key(db_url: str, *args: str) -> str:
    result = cli(db_url, *args)
    assert result.returncode == 0, result.stderr
    key = result.stdout.splitlines()[-1]
    assert KEY.fullmatch(key)
    return key


async def socket_of(base_url: str, role: str, key: str) -> Socket:
    sock = await Socket.connect(f"ws://{base_url[len('http://') :]}/v1/chat/{role}/ws/", key)
    assert (await sock.recv())["type"] == "hello"
    return sock


async def closed_within(sock: Socket, seconds: float) -> int | None:
    """The close code if the server closes ``sock`` within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if await sock.recv(max(0.01, deadline - time.monotonic())) is None:
                return sock.close_code
        except TimeoutError:
            break
    return None


# --- the commands, end to end -----------------------------------------------------
def test_list_commands_print_a_table_without_keys(db_url):
    admin_key = new_key(db_url, "create-admin", "--name", "  Dana  ", "--email", "d@example.com")
    store_key = new_key(
        db_url, "create-store", "--name", "Tech Store", "--logo-url", "https://example.com/logo.png"
    )
    admins = cli(db_url, "list-admins")
    assert admins.returncode == 0
    assert admins.stdout.splitlines() == ["id  name  email", "1   Dana  d@example.com"]
    stores = cli(db_url, "list-stores").stdout.splitlines()
    assert stores[0].split() == ["id", "name", "email", "logo"]
    assert stores[1].split() == ["1", "Tech", "Store", "-", "https://example.com/logo.png"]
    for out in (admins.stdout, "\n".join(stores)):
        assert admin_key not in out and store_key not in out and not KEY.search(out)


def test_list_commands_on_an_empty_database_say_how_to_create_one(db_url):
    result = cli(db_url, "list-stores")
    assert result.returncode == 0 and "No stores yet" in result.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["create-admin", "--name", "   "], "--name must not be empty"),
        (["create-admin", "--name", "Dana", "--email", "dana"], "--email 'dana' is not an email"),
        (["create-admin", "--name", "Dana", "--email", "dana@localhost"], "is not an email"),
        (["create-admin", "--name", "Dana", "--email", "a b@example.com"], "is not an email"),
        (
            ["create-store", "--name", "Shop", "--logo-url", "http://example.com/l.png"],
            "is not an https:// URL",
        ),
        (
            ["create-store", "--name", "Shop", "--logo-url", "javascript:alert(1)"],
            "is not an https:// URL",
        ),
        (["create-store", "--name", "Shop", "--logo-url", "https://"], "is not an https:// URL"),
        (["create-store", "--name", "Sh\x07op"], "not printable"),
        (["create-store", "--name", "x" * 201], "at most 200"),
    ],
)
def test_bad_account_input_is_one_line_and_exit_2_and_stores_nothing(db_url, args, expected):
    assert expected in one_line_error(cli(db_url, *args), 2)
    assert "No admins yet" in cli(db_url, "list-admins").stdout
    assert "No stores yet" in cli(db_url, "list-stores").stdout


@pytest.mark.parametrize("command", ["rotate-key", "revoke-key"])
def test_an_unknown_account_is_one_line_and_exit_1(db_url, command):
    new_key(db_url, "create-admin", "--name", "Dana")
    assert "no store with id 1" in one_line_error(cli(db_url, command, "--store", "1"), 1)
    assert "no admin with id 7" in one_line_error(cli(db_url, command, "--admin", "7"), 1)


def test_an_id_storage_cannot_hold_is_refused_by_the_parser(db_url):
    result = cli(db_url, "revoke-key", "--admin", str(2**63))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is not an id" in result.stderr


@pytest.mark.gen_test(timeout=60)
async def test_rotate_key_prints_a_new_key_and_the_old_one_gets_401_at_once(
    db_url, processes, tmp_path
):
    old = new_key(db_url, "create-admin", "--name", "Dana")
    proc = ServerProcess(db_url).start(str(tmp_path / "log"))
    processes.append(proc)
    api = Api(proc.base_url + "/v1/chat")
    assert (await api.get("/admin/sessions/open/", old)).status == 200
    new = new_key(db_url, "rotate-key", "--admin", "1")
    assert new != old
    assert (await api.get("/admin/sessions/open/", old)).status == 401
    assert (await api.get("/admin/sessions/open/", new)).status == 200


@pytest.mark.gen_test(timeout=90)
async def test_revoke_key_closes_that_accounts_sockets_with_4001_on_every_process(
    db_url, processes, tmp_path
):
    store_key = new_key(db_url, "create-store", "--name", "Tech")
    admin_key = new_key(db_url, "create-admin", "--name", "Dana")
    for i in range(2):
        processes.append(ServerProcess(db_url).start(str(tmp_path / f"log{i}")))
    store_sockets = [await socket_of(p.base_url, "store", store_key) for p in processes]
    admin_sockets = [await socket_of(p.base_url, "admin", admin_key) for p in processes]
    result = cli(db_url, "revoke-key", "--store", "1")
    assert result.returncode == 0 and "Revoked the key of store 1" in result.stdout
    codes = await asyncio.gather(*(closed_within(s, 1.0) for s in store_sockets))
    assert codes == [4001, 4001]
    for proc in processes:
        api = Api(proc.base_url + "/v1/chat")
        assert (await api.get("/store/session/", store_key)).status == 401
        assert (await api.get("/admin/sessions/open/", admin_key)).status == 200
    for sock in admin_sockets:  # another account's sockets stay open (presence aside)
        assert [f for f in await sock.expect_silence(0.2) if f["type"] != "presence"] == []
        assert sock.close_code is None
    # A revoked account can be given a key again.
    again = new_key(db_url, "rotate-key", "--store", "1")
    assert (await Api(processes[0].base_url + "/v1/chat").get("/store/session/", again)).status in (
        200,
        404,
    )


@pytest.mark.gen_test(timeout=30)
async def test_rotating_a_key_closes_the_sockets_opened_with_the_old_one(server):
    store, store_key = await make_store(server)
    _other, other_key = await make_store(server, "Other")
    mine = await socket_of(server.url, "store", store_key)
    theirs = await socket_of(server.url, "store", other_key)
    assert await server.raw_storage.rotate_key(Role.STORE, store.id)
    assert await closed_within(mine, 1.0) == 4001
    assert await theirs.expect_silence(0.4) == [] and theirs.close_code is None


@pytest.mark.gen_test(timeout=30)
async def test_a_socket_cannot_authenticate_with_a_revoked_key(server):
    admin, key = await make_admin(server)
    assert await server.raw_storage.revoke_key(Role.ADMIN, admin.id)
    sock = await Socket.connect(server.ws_url + "/v1/chat/admin/ws/", key)
    assert await sock.recv() is None and sock.close_code == 4001


# --- --demo reuses its accounts -----------------------------------------------------
@pytest.mark.gen_test(timeout=60)
async def test_demo_creates_accounts_once_and_reuses_them_with_rotate_hints(
    db_url, processes, tmp_path
):
    log = tmp_path / "log"
    first = ServerProcess(db_url, args=["--demo"]).start(str(log))
    processes.append(first)
    assert first.stop() == 0
    created = log.read_text()
    admin_key = re.search(r"ADMIN=([0-9a-f]{40})", created).group(1)
    second = ServerProcess(db_url, args=["--demo"]).start(str(log))
    processes.append(second)
    reused = log.read_text()[len(created) :]
    assert "reusing the demo accounts" in reused
    assert not KEY.search(reused)  # keys are not shown, and none were made
    hint = re.search(r"ADMIN=\$\((.*) \| tail -1\)", reused).group(1)
    python = os.path.relpath(sys.executable, ROOT)  # .venv/bin/python under make
    if python.startswith(".."):
        python = sys.executable
    assert hint == f"{python} server.py --storage {db_url} rotate-key --admin 1"
    assert (
        await Api(second.base_url + "/v1/chat").get("/admin/sessions/open/", admin_key)
    ).status == 200
    assert len(cli(db_url, "list-admins").stdout.splitlines()) == 2  # header + the demo admin


def test_demo_adds_no_accounts_to_a_database_that_has_real_ones(db_url, processes, tmp_path):
    new_key(db_url, "create-admin", "--name", "Dana")
    log = tmp_path / "log"
    processes.append(ServerProcess(db_url, args=["--demo"]).start(str(log)))
    assert "already has accounts; not creating demo ones" in log.read_text()
    assert len(cli(db_url, "list-admins").stdout.splitlines()) == 2


# --- the storage contract of the new methods, on every backend -----------------------
@pytest.mark.gen_test
async def test_rotate_and_revoke_change_keys_and_are_announced_in_order(storage):  # noqa: F811
    admin, admin_key = await storage.create_admin("Dana", "d@example.com")
    store, store_key = await storage.create_store("Tech", None, "https://x/l.png")
    assert [a.name for a in await storage.list_admins()] == ["Dana"]
    assert [(s.id, s.logo_url) for s in await storage.list_stores()] == [
        (store.id, "https://x/l.png")
    ]
    start = await storage.key_changes_head()
    new = await storage.rotate_key(Role.ADMIN, admin.id)
    assert await storage.authenticate(admin_key) is None
    assert (await storage.authenticate(new)).id == admin.id
    assert await storage.revoke_key(Role.STORE, store.id) is True
    assert await storage.authenticate(store_key) is None
    assert await storage.rotate_key(Role.STORE, 999) is None
    assert await storage.revoke_key(Role.ADMIN, 999) is False
    changes = await storage.key_changes_since(start)
    assert [(c.role, c.account_id, c.kind) for c in changes] == [
        (Role.ADMIN, admin.id, "rotated"),
        (Role.STORE, store.id, "revoked"),
    ]
    assert await storage.key_changes_since(changes[-1].position) == []
    assert await storage.key_changes_since(await storage.key_changes_head()) == []
    # two revoked accounts do not collide on the unique digest column
    assert await storage.revoke_key(Role.ADMIN, admin.id) is True


@pytest.mark.gen_test
async def test_a_socket_that_authenticated_just_before_a_revoke_is_swept_after_it(storage):  # noqa: F811
    # The race: the socket's auth read the key, the revoke committed, the watcher
    # acted, and only then did the socket join the hub.
    hub, closed = Hub(), []
    watch = KeyWatch(storage, hub, close_code=4001)
    watch.position = await storage.key_changes_head()
    revoked, _ = await storage.create_admin("Gone", None)
    rotated, _ = await storage.create_admin("Rotated", None)
    assert await storage.revoke_key(Role.ADMIN, revoked.id)
    assert await storage.rotate_key(Role.ADMIN, rotated.id)
    assert await watch.check() == 0  # no sockets yet
    for conn_id, admin in enumerate((revoked, rotated)):
        hub.add(
            conn_id,
            Role.ADMIN,
            admin.id,
            lambda frame: None,
            lambda code, reason, conn_id=conn_id: closed.append((conn_id, code)),
        )
    assert await watch.check() == 1
    assert closed == [(0, 4001)]  # the rotated account's new socket may hold its new key
