"""The actor runtime: serial commands, bounded mailboxes, supervision, passivation."""

from __future__ import annotations

import asyncio

import pytest

from actors.actor import Actor
from actors.errors import ActorStopped, Conflict, MailboxFull
from actors.runtime import ActorSystem
from tests.helpers import claimed_session


class Recorder(Actor):
    """Records commands; 'boom' raises, 'wait' blocks on the shared gate."""

    def __init__(self, key, log, gate):
        self.key, self.log, self.gate = key, log, gate

    async def on_start(self):
        self.log.append(("start", self.key))

    async def receive(self, command):
        if command == "boom":
            raise RuntimeError("boom")
        if command == "refuse":
            raise Conflict("no")
        if command == "wait":
            await self.gate.wait()
        self.log.append(("got", command))
        await asyncio.sleep(0)
        return command

    async def on_stop(self):
        self.log.append(("stop", self.key))


@pytest.fixture
def make_system(io_loop):
    """Builds actor systems and stops them after the test."""
    systems = []

    def build(**kw):
        log, gate = [], asyncio.Event()
        system = ActorSystem(lambda key: Recorder(key, log, gate), **kw)
        systems.append((system, gate))
        return system, log, gate

    yield build
    for system, gate in systems:
        gate.set()
        io_loop.run_sync(system.stop_all)


@pytest.mark.gen_test
async def test_commands_for_one_key_run_one_at_a_time_in_order(make_system):
    system, log, _ = make_system()
    results = await asyncio.gather(*[system.ask("s", i) for i in range(20)])
    assert results == list(range(20))
    assert [c for kind, c in log if kind == "got"] == list(range(20))


@pytest.mark.gen_test
async def test_a_full_mailbox_refuses_at_once_instead_of_queueing(make_system):
    system, _, gate = make_system(mailbox_size=2)
    first = asyncio.ensure_future(system.ask("s", "wait"))
    await asyncio.sleep(0.01)  # the actor is now busy with it
    queued = [asyncio.ensure_future(system.ask("s", i)) for i in range(2)]
    await asyncio.sleep(0)  # let both enqueue
    with pytest.raises(MailboxFull):
        await system.ask("s", "one too many")
    gate.set()
    assert await first == "wait" and await asyncio.gather(*queued) == [0, 1]


@pytest.mark.gen_test
async def test_a_failing_command_answers_with_its_error_and_the_actor_restarts(make_system):
    system, log, _ = make_system()
    with pytest.raises(RuntimeError):
        await system.ask("s", "boom")
    assert await system.ask("s", "after") == "after"
    assert log.count(("start", "s")) == 2  # restarted, reloading its state


@pytest.mark.gen_test
async def test_a_domain_error_is_an_answer_not_a_failure(make_system):
    system, log, _ = make_system()
    with pytest.raises(Conflict):
        await system.ask("s", "refuse")
    assert await system.ask("s", "ok") == "ok"
    assert log.count(("start", "s")) == 1


@pytest.mark.gen_test
async def test_restarts_are_capped_per_window_then_the_actor_stops(make_system):
    system, log, _ = make_system(max_restarts=2, restart_window_secs=60)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await system.ask("s", "boom")
        assert "s" in system  # restarted
    with pytest.raises(RuntimeError):
        await system.ask("s", "boom")
    await asyncio.sleep(0.01)
    assert "s" not in system and ("stop", "s") in log  # past the cap: stopped
    assert await system.ask("s", "fresh") == "fresh"  # the next command starts anew


@pytest.mark.gen_test
async def test_messages_left_in_the_mailbox_when_an_actor_stops_receive_an_error(make_system):
    system, log, gate = make_system(max_restarts=0)
    blocked = asyncio.ensure_future(system.ask("s", "wait"))
    await asyncio.sleep(0.01)
    failing = asyncio.ensure_future(system.ask("s", "boom"))
    left = asyncio.ensure_future(system.ask("s", "left behind"))
    gate.set()
    assert await blocked == "wait"
    with pytest.raises(RuntimeError):
        await failing
    with pytest.raises(ActorStopped):
        await left
    assert ("stop", "s") in log and "s" not in system


@pytest.mark.gen_test
async def test_an_idle_actor_is_passivated_and_the_next_command_starts_a_fresh_one(make_system):
    system, log, _ = make_system(idle_timeout_secs=0.1)
    await system.ask("s", "one")
    assert "s" in system
    await asyncio.sleep(0.4)
    assert "s" not in system and ("stop", "s") in log
    assert await system.ask("s", "two") == "two"
    assert log.count(("start", "s")) == 2


class TestOverHTTP:
    @pytest.fixture
    def overrides(self):
        return {"actors": {"idle_timeout_secs": 0.1, "mailbox_size": 1}}

    @pytest.mark.gen_test
    async def test_a_passivated_sessions_next_command_works_from_storage(self, server, api):
        _store_key, admin_key, session = await claimed_session(server, api)
        assert session["id"] in server.service.actors
        await asyncio.sleep(0.5)
        assert session["id"] not in server.service.actors
        reply = await api.post(
            "/admin/message/", admin_key, {"session_id": session["id"], "body": "back"}
        )
        assert reply.status == 201 and reply.json["seq"] == 3
        # the fresh actor knows the session is claimed: another claim is a retry
        again = await api.post("/admin/session/claim/", admin_key, {"session_id": session["id"]})
        assert again.status == 200

    @pytest.mark.gen_test(timeout=30)
    async def test_a_full_mailbox_answers_503_with_retry_after_and_loses_nothing(self, server, api):
        _store_key, admin_key, session = await claimed_session(server, api)
        replies = await asyncio.gather(
            *[
                api.post(
                    "/admin/message/", admin_key, {"session_id": session["id"], "body": f"{i}"}
                )
                for i in range(60)
            ]
        )
        refused = [r for r in replies if r.status == 503]
        accepted = [r for r in replies if r.status == 201]
        assert refused and accepted and len(refused) + len(accepted) == 60
        assert refused[0].headers["Retry-After"] == "1"
        assert refused[0].json == {"detail": "Session is busy, try again shortly."}
        history = await api.get(f"/admin/session/{session['id']}/?limit=1000", admin_key)
        stored = [m["body"] for m in history.json["messages"] if m["sender"] == "admin"]
        assert sorted(stored) == sorted(r.json["body"] for r in accepted)
        assert [m["seq"] for m in history.json["messages"]] == list(
            range(1, len(history.json["messages"]) + 1)
        )


# --- actors/runtime.py: commands started without a coroutine (start_now) -------------
class Starter(Actor):
    """Posts ("post", n) start now and are answered by ``finish``; anything
    else goes through ``receive``. Records what overlaps ``on_start``."""

    def __init__(self) -> None:
        self.pending: list = []
        self.starting = False
        self.seen_while_starting: list = []
        self.starts = 0
        self.raise_in_start_now = False

    async def on_start(self) -> None:
        self.starts += 1
        self.starting = True
        await asyncio.sleep(0.05)
        self.starting = False

    def overlap_key(self, command):
        return "post" if command[0] == "post" else None

    def start_now(self, command, reply) -> bool:
        if command[0] != "post":
            return False
        if self.raise_in_start_now:
            raise RuntimeError("storage refused the hand-off")
        if self.starting:
            self.seen_while_starting.append(command)
        self.pending.append(reply)
        return True

    async def receive(self, command):
        if self.starting:
            self.seen_while_starting.append(command)
        return command


@pytest.mark.gen_test(timeout=10)
async def test_a_start_now_that_raises_does_not_wedge_the_actor():
    actor = Starter()
    system = ActorSystem(lambda key: actor)
    await system.ask(1, ("read", 0))  # started
    actor.raise_in_start_now = True
    with pytest.raises(RuntimeError):
        system.ask_with_reply(1, ("post", 1), lambda result, exc: None)
    assert await asyncio.wait_for(system.ask(1, ("read", 2)), 2) == ("read", 2)
    await system.stop_all(1)


@pytest.mark.gen_test(timeout=10)
async def test_no_command_runs_while_a_restart_reloads_the_actor():
    actor = Starter()
    system = ActorSystem(lambda key: actor)
    await system.ask(1, ("read", 0))
    answers = []
    system.ask_with_reply(1, ("post", 1), lambda result, exc: answers.append((result, exc)))
    actor.pending.pop()(None, RuntimeError("disk I/O error"))  # unexpected: restart
    await asyncio.sleep(0.01)  # the loop is now in on_start (the restart)
    assert actor.starting and actor.starts == 2
    system.ask_with_reply(1, ("post", 2), lambda result, exc: answers.append((result, exc)))
    read = asyncio.ensure_future(system.ask(1, ("read", 3)))
    await asyncio.sleep(0.1)
    assert actor.seen_while_starting == [], actor.seen_while_starting
    for reply in actor.pending:
        reply("ok", None)
    await read
    await system.stop_all(1)
