"""The MongoDB paths, judged on one MongoDB-compatible wire-protocol server (SecantusDB).

One daemon, one run, every figure of issue 17's table:

1. **engine**: the server's own rate for the 2-write message transaction with
   ``--writers`` K concurrent PyMongo writers (each message one transaction,
   majority: ``$inc`` the session's ``last_seq`` and set ``last_message_at``,
   insert the message); no chat server involved. Twice, back to back: on bare
   collections (issue 17's definition, the headline "÷ engine") and on
   collections carrying the server's indexes, set up by the storage code
   itself, with documents the server wrote (SecantusDB rewrites every index
   entry of a document it writes, so these cost the daemon more per message).
2. **server msgs/s**, K stores writing one message after another (closed
   loop), through 1 node and through 2 nodes (the K stores split between
   them), over REST and over WebSocket (send, wait for the ack).
3. **cross-node delivery**: a store's WebSocket on node A sends, the holding
   admin's WebSocket on node B receives; p50/p99 from A's ack to B's frame.
4. **SIGKILL**: two nodes, K stores writing through each over REST; node A is
   SIGKILLed mid-traffic and node B's replies are watched for
   ``--watch-secs``: its 5xx count and longest stall (the longest time
   without any reply), over ``--rounds`` rounds; and A's stores, which move
   to node B as a client reconnects to any node: how long until each is
   served again (a session whose change A had open waits for the server to
   reap that transaction).

SecantusDB is a Python server, far slower than mongod: the figures describe
this code's path against that engine, and the ratios are the point. Starts its
own SecantusDB (test-only dependency) unless ``--mongo-url`` names a server.
Bounded in count and time; all on 127.0.0.1.

    .venv/bin/python bench/mongo_paths.py --writers 8 --seconds 8 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import pymongo
import tornado.httpclient

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tests.helpers
from storage import open_storage
from tests.helpers import Api, ServerProcess, Socket
from tests.wire_server import WireServer, start_secantus

# One figure's runs: each run's (rate, CPU µs per message by process).
Runs = list[tuple[float, dict[str, float]]]
# msgs/s figures by (transport, nodes).
Figures = dict[tuple[str, int], Runs]
# engine figures by kind (``ENGINES``), then by the transport whose figures they precede.
Engines = dict[str, dict[str, Runs]]

# No loop runs longer than its --seconds, nor sends more than this per writer.
MAX_PER_WRITER = 5000


def write_config(workdir: str, name: str, node: str = "") -> str:
    path = os.path.join(workdir, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(
            "events:\n  poll_interval_secs: 0.02\n"
            + (f"  node: {node}\n" if node else "")
            + "logging:\n  level: WARNING\n"
        )
    return path


def fresh_db(wire: WireServer, label: str) -> str:
    return wire.url_for(f"bench_{label}_{time.monotonic_ns()}")


async def make_keys(url: str, admins: int, stores: int) -> tuple[list[str], list[str]]:
    storage = open_storage(url)
    await storage.setup()
    try:
        admin_keys = [(await storage.create_admin(f"A{i}", None))[1] for i in range(admins)]
        store_keys = [(await storage.create_store(f"S{i}", None, None))[1] for i in range(stores)]
    finally:
        await storage.close()
    return admin_keys, store_keys


def cpu_secs(pid: int) -> tuple[float, float]:
    """CPU time (user, system) of process ``pid``, all its threads, in seconds."""
    user = system = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:  # the thread ended meanwhile
            continue
        user, system = user + int(fields[11]), system + int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


class CpuMeter:
    """CPU seconds of named processes between ``start`` and ``stop``: where
    throughput goes on a machine with few cores."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.used: dict[str, tuple[float, float]] = {}

    def start(self) -> None:
        self.used = {name: cpu_secs(pid) for name, pid in self.pids.items()}

    def stop(self) -> None:
        for name, pid in self.pids.items():
            user, system = cpu_secs(pid)
            self.used[name] = (user - self.used[name][0], system - self.used[name][1])

    def totals(self, messages: int) -> dict[str, float]:
        """µs of CPU per message, by process."""
        n = max(messages, 1)
        return {name: (user + system) / n * 1e6 for name, (user, system) in self.used.items()}

    def per_message(self, messages: int) -> str:
        """µs of CPU per message, by process (of which in the kernel)."""
        n = max(messages, 1)
        return ", ".join(
            f"{name} {(user + system) / n * 1e6:.0f} (sys {system / n * 1e6:.0f})"
            for name, (user, system) in self.used.items()
        )


def start_profiles(pids: dict[str, int], out: str | None, label: str, secs: float) -> list:
    """``py-spy record --gil`` (raw, 100 Hz) of each process for ``secs``, if
    ``out`` names a folder and py-spy is installed (not a project dependency).
    Only samples holding the GIL, i.e. running Python: without ``--gil`` an
    idle uvloop shows as busy in the last frame it ran."""
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not out or not os.path.exists(spy):
        return []
    os.makedirs(out, exist_ok=True)
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "-r",
                "100",
                "-d",
                str(max(1, int(secs))),
                "-f",
                "raw",
                "-o",
                os.path.join(out, f"{label}-{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100)[pct - 1]


def start_nodes(url: str, workdir: str, count: int, tag: str) -> list[ServerProcess]:
    return [
        ServerProcess(url, config_path=write_config(workdir, f"{tag}-{i}", f"{tag}-{i}")).start(
            os.path.join(workdir, f"{tag}-{i}.log")
        )
        for i in range(count)
    ]


# --- 1. the engine's own rate --------------------------------------------------------
# The two engine figures: the issue's, on bare collections (the headline), and
# the same transaction on collections carrying the server's indexes.
ENGINES = {"bare": "bare collections", "indexed": "the server's indexes"}


async def server_shaped(url: str, writers: int) -> dict[int, dict[str, Any]]:
    """Set up the database at ``url`` with the storage code itself, so the
    engine's collections carry exactly the server's indexes (its ``setup``),
    and have it open one session per writer (a store's first message).
    Returns, by session id, that session's message as the server stored it,
    without its ``_id``: the shape of every message the engine inserts."""
    storage = open_storage(url)
    await storage.setup()
    try:
        for i in range(writers):
            store, _ = await storage.create_store(f"S{i}", None, None)
            await storage.post_store_message(store.id, "x", None)
    finally:
        await storage.close()
    client: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(url)
    try:
        docs = await client.get_default_database().messages.find({}, {"_id": 0}).to_list(None)
    finally:
        await client.close()
    return {doc["session_id"]: doc for doc in docs}


async def engine_rate(
    wire: WireServer, url: str, writers: int, seconds: float, indexes: bool = False
) -> tuple[float, str, dict[str, float]]:
    """Transactions/s, and the CPU µs per transaction of the daemon and this
    bench (the writers). With ``indexes`` the collections carry the server's
    indexes and the documents are the server's (``server_shaped``): the same
    two writes, plus the index entries the daemon maintains for them."""
    cpu = CpuMeter({"daemon": wire.proc.pid} if wire.proc else {})
    cpu.pids["bench"] = os.getpid()
    shapes = await server_shaped(url, writers) if indexes else {}
    client: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(url, w="majority")
    db = client.get_default_database()
    if not indexes:
        shapes = {i: {"session_id": i, "body": "x"} for i in range(writers)}
        await db.sessions.insert_many([{"_id": i, "last_seq": 0} for i in shapes])
    deadline = time.perf_counter() + seconds
    done = 0

    async def writer(sid: int) -> None:
        nonlocal done

        async def message(s):
            doc = await db.sessions.find_one_and_update(
                {"_id": sid},
                {"$inc": {"last_seq": 1}, "$set": {"last_message_at": time.time()}},
                return_document=pymongo.ReturnDocument.AFTER,
                session=s,
            )
            assert doc is not None  # the writer's session, written above
            await db.messages.insert_one({**shapes[sid], "seq": doc["last_seq"]}, session=s)

        for _ in range(MAX_PER_WRITER):
            if time.perf_counter() > deadline:
                return
            async with client.start_session() as s:
                await s.with_transaction(message)
            done += 1

    started = time.perf_counter()
    cpu.start()
    await asyncio.gather(*[writer(sid) for sid in shapes])
    rate = done / (time.perf_counter() - started)
    cpu.stop()
    await client.drop_database(db.name)
    await client.close()
    return rate, cpu.per_message(done), cpu.totals(done)


# --- 2. the server's msgs/s ----------------------------------------------------------
async def server_rate(
    wire: WireServer,
    workdir: str,
    nodes: int,
    writers: int,
    seconds: float,
    transport: str,
    profile: str | None = None,
    tree: str = "this",
) -> tuple[float, str, dict[str, float]]:
    """msgs/s, and the CPU µs per message of each node, the daemon and this
    bench (the clients)."""
    url = fresh_db(wire, f"{transport}{nodes}")
    _, keys = await make_keys(url, 0, writers)
    procs = start_nodes(url, workdir, nodes, f"{transport}{nodes}")
    pids = {f"node{i}": proc.proc.pid for i, proc in enumerate(procs) if proc.proc}
    if wire.proc is not None:
        pids["daemon"] = wire.proc.pid
    spies = start_profiles(pids, profile, f"{tree}-{transport}{nodes}", seconds - 2)
    pids["bench"] = os.getpid()
    cpu = CpuMeter(pids)
    try:
        deadline = time.perf_counter() + seconds
        counts = [0] * writers

        async def rest(i: int, key: str) -> None:
            api = Api(procs[i % nodes].base_url + "/v1/chat")
            for n in range(MAX_PER_WRITER):
                if time.perf_counter() > deadline:
                    break
                reply = await api.post("/store/message/", key, {"body": f"m{n}"})
                assert reply.status in (200, 201), reply
                counts[i] += 1
            api.close()

        async def ws(i: int, key: str) -> None:
            port = procs[i % nodes].port
            sock = await Socket.connect(f"ws://127.0.0.1:{port}/v1/chat/store/ws/", key)
            await sock.recv()
            for n in range(MAX_PER_WRITER):
                if time.perf_counter() > deadline:
                    break
                await sock.request({"type": "message", "body": f"m{n}"})
                counts[i] += 1
            sock.close()

        started = time.perf_counter()
        cpu.start()
        await asyncio.gather(
            *[(rest if transport == "rest" else ws)(i, k) for i, k in enumerate(keys)]
        )
        elapsed = time.perf_counter() - started
        cpu.stop()
        return sum(counts) / elapsed, cpu.per_message(sum(counts)), cpu.totals(sum(counts))
    finally:
        for spy in spies:
            spy.wait(timeout=30)
        for proc in procs:
            proc.stop()


async def other_tree_rate(
    root: str,
    wire: WireServer,
    workdir: str,
    nodes: int,
    writers: int,
    seconds: float,
    transport: str,
    profile: str | None = None,
) -> tuple[float, str, dict[str, float]]:
    """``server_rate`` with ``server.py`` from another checkout (``--compare``),
    on the same daemon: a change measured against its baseline side by side."""
    here = tests.helpers.ROOT
    tests.helpers.ROOT = root  # where ServerProcess starts server.py
    try:
        return await server_rate(
            wire, workdir, nodes, writers, seconds, transport, profile, "other"
        )
    finally:
        tests.helpers.ROOT = here


# --- 3. cross-node delivery ----------------------------------------------------------
async def cross_node_latency(wire: WireServer, workdir: str, messages: int) -> dict:
    url = fresh_db(wire, "latency")
    (admin_key,), (store_key,) = await make_keys(url, 1, 1)
    a, b = start_nodes(url, workdir, 2, "latency")
    try:
        store = await Socket.connect(f"ws://127.0.0.1:{a.port}/v1/chat/store/ws/", store_key)
        admin = await Socket.connect(f"ws://127.0.0.1:{b.port}/v1/chat/admin/ws/", admin_key)
        await store.recv(), await admin.recv()
        sid = (await store.request({"type": "message", "body": "hi"}))["message"]["session_id"]
        await Api(b.base_url + "/v1/chat").post(
            "/admin/session/claim/", admin_key, {"session_id": sid}
        )
        from_ack = []
        for i in range(messages):
            ack = await store.request({"type": "message", "body": f"m{i}"})
            acked = time.perf_counter()
            while True:
                frame = await admin.recv(10)
                if frame["type"] == "message" and frame["message"]["id"] == ack["message"]["id"]:
                    break
            from_ack.append(max(0.0, time.perf_counter() - acked))
        return {"p50": statistics.median(from_ack) * 1000, "p99": percentile(from_ack, 99) * 1000}
    finally:
        a.stop(), b.stop()


# --- 4. SIGKILL one node mid-traffic -------------------------------------------------
async def kill_round(
    wire: WireServer, workdir: str, writers: int, watch_secs: float, round_no: int
) -> dict:
    """After A's SIGKILL: node B's 5xx count, longest stall and replies for its
    own stores; and for A's stores, which move to B (as a client reconnects
    to any node), how long until each is served again."""
    url = fresh_db(wire, f"kill{round_no}")
    _, keys = await make_keys(url, 0, 2 * writers)
    a, b = start_nodes(url, workdir, 2, f"kill{round_no}")
    try:
        killed_at: list[float] = []
        stop_at = [float("inf")]
        b_replies: list[tuple[float, int]] = []
        moved: dict[str, float | None] = {}  # A's store -> first success on B after the kill

        async def write(node: ServerProcess, key: str, watched: bool) -> None:
            api = Api(node.base_url + "/v1/chat")
            for n in range(MAX_PER_WRITER):
                if time.monotonic() > stop_at[0]:
                    break
                try:
                    reply = await api.post(
                        "/store/message/", key, {"body": f"m{n}", "client_id": f"{key[:6]}-{n}"}
                    )
                except (OSError, tornado.httpclient.HTTPClientError):  # node A died
                    if watched or key in moved:
                        raise
                    reply = None
                if watched and killed_at:
                    assert reply is not None  # a watched writer raised above instead
                    b_replies.append((time.monotonic(), reply.status))
                elif not watched and (reply is None or reply.status == 599):
                    while not killed_at:  # the client notices before the bench does
                        await asyncio.sleep(0.01)
                    moved[key] = None
                    api.close()
                    api = Api(b.base_url + "/v1/chat")  # reconnect to the other node
                elif key in moved and moved[key] is None and reply and reply.status in (200, 201):
                    moved[key] = time.monotonic() - killed_at[0]
            api.close()

        tasks = [asyncio.ensure_future(write(a, k, False)) for k in keys[:writers]]
        tasks += [asyncio.ensure_future(write(b, k, True)) for k in keys[writers:]]
        await asyncio.sleep(2.0)
        a.kill()
        killed_at.append(time.monotonic())
        stop_at[0] = killed_at[0] + watch_secs
        await asyncio.gather(*tasks)
        times = killed_at + [t for t, _ in b_replies] + [stop_at[0]]
        served = sorted(v for v in moved.values() if v is not None)
        return {
            "errors": sum(1 for _, status in b_replies if status >= 500),
            "stall": max(later - earlier for earlier, later in itertools.pairwise(times)),
            "replies": len(b_replies),
            "moved": len(moved),
            "served": served,
        }
    finally:
        a.kill()
        b.stop()


async def main_async(args: argparse.Namespace) -> None:
    workdir = tempfile.mkdtemp(prefix="chat-bench-mongo-")
    wire = WireServer(args.mongo_url) if args.mongo_url else start_secantus(workdir)
    k, secs = args.writers, args.seconds
    try:
        # The engine is measured again before each transport's figures (and
        # each repeat), so each "÷ engine" compares figures minutes apart at
        # most on a machine whose load moves; the table takes medians. Both
        # engine figures are taken back to back, in alternating order.
        engines: Engines = {kind: {} for kind in ENGINES}
        rates: Figures = {}
        compared: Figures = {}
        pairs = itertools.count()
        for repeat in range(args.repeat):
            for transport in args.transports.split(","):
                kinds = list(ENGINES)  # which goes first alternates
                for kind in kinds if next(pairs) % 2 == 0 else kinds[::-1]:
                    engine, used, cpu = await engine_rate(
                        wire, fresh_db(wire, f"engine_{kind}"), k, secs, kind == "indexed"
                    )
                    engines[kind].setdefault(transport, []).append((engine, cpu))
                    print(
                        f"[{repeat + 1}] engine ({ENGINES[kind]}), {k} writers, 2-write "
                        f"message transaction: {engine:.1f} /s; CPU µs/transaction: {used}",
                        flush=True,
                    )
                for nodes in [int(n) for n in args.nodes.split(",")]:
                    if args.compare:  # the other tree first, then this one, back to back
                        rate, used, cpu = await other_tree_rate(
                            args.compare, wire, workdir, nodes, k, secs, transport, args.profile
                        )
                        compared.setdefault((transport, nodes), []).append((rate, cpu))
                        print(
                            f"  {args.compare}: server {transport} {nodes} node(s): "
                            f"{rate:.1f} msgs/s; CPU µs/msg: {used}",
                            flush=True,
                        )
                    rate, used, cpu = await server_rate(
                        wire, workdir, nodes, k, secs, transport, args.profile
                    )
                    rates.setdefault((transport, nodes), []).append((rate, cpu))
                    print(
                        f"server {transport} {nodes} node(s), {k} writers: "
                        f"{rate:.1f} msgs/s; CPU µs/msg: {used}",
                        flush=True,
                    )
        if args.only_rates:
            print_rates(k, engines, rates, compared, args.compare)
            return
        latency = await cross_node_latency(wire, workdir, args.messages)
        print(
            f"cross-node delivery from the ack: p50 {latency['p50']:.1f} ms, "
            f"p99 {latency['p99']:.1f} ms",
            flush=True,
        )
        kills = []
        for r in range(args.rounds):
            kills.append(await kill_round(wire, workdir, k, args.watch_secs, r))
            got = kills[-1]
            print(
                f"SIGKILL round {r + 1}: node B 5xx {got['errors']}, longest stall "
                f"{got['stall']:.2f} s, {got['replies']} replies in {args.watch_secs:.0f} s; "
                f"A's stores moved to B: {len(got['served'])} of {got['moved']} served "
                f"again, after {', '.join(f'{v:.2f}' for v in got['served'])} s",
                flush=True,
            )
    finally:
        wire.stop()
    print_rates(k, engines, rates, compared, args.compare)
    print(
        f"| cross-node delivery from the ack, p50 / p99 | {latency['p50']:.1f} / "
        f"{latency['p99']:.1f} ms |"
    )
    print(
        f"| node B after SIGKILL of A, {args.rounds} rounds: 5xx | "
        f"{sum(g['errors'] for g in kills)} ({', '.join(str(g['errors']) for g in kills)}) |"
    )
    print(
        f"| node B longest stall per round (s) | "
        f"{', '.join(format(g['stall'], '.2f') for g in kills)} |"
    )
    served = [v for g in kills for v in g["served"]]
    moved = sum(g["moved"] for g in kills)
    print(
        f"| A's stores moved to B: served again within {args.watch_secs:.0f} s | "
        f"{len(served)} of {moved}; median {statistics.median(served) if served else 0:.2f} s, "
        f"max {max(served) if served else 0:.2f} s |"
    )


def print_rates(
    k: int,
    engines: Engines,
    rates: Figures,
    compared: Figures,
    other: str | None,
) -> None:
    """The table's head, its engine rows (both: ``ENGINES``) and its msgs/s
    rows, this tree's and the other's (medians of the repeats), with the CPU
    µs per message (transaction) of the nodes (together) and of the daemon.
    One node's msgs/s is divided by each engine figure: the bare collections'
    is the issue's definition, the headline."""
    print()
    print(f"| figure (one run, SecantusDB, K = {k}) | this tree | {other or ''} |")
    print("|---|---|---|")
    for kind, figures in engines.items():
        for transport, runs in figures.items():
            rate, cpu = _median(runs)
            shown = ", ".join(f"{v:.1f}" for v, _ in runs)
            print(
                f"| engine ({ENGINES[kind]}): 2-write message transactions/s, {k} writers, "
                f"before the {transport} figures (median of {shown}) | {rate:.1f}; "
                f"CPU µs/transaction: daemon {cpu.get('daemon', 0):.0f} | |"
            )
    for transport, nodes in rates:
        name = "REST" if transport == "rest" else "WebSocket"
        cells = []
        for figures in (rates, compared):
            if (transport, nodes) not in figures:
                cells.append("")
                continue
            got, cpu = _median(figures[transport, nodes])
            if nodes == 1:
                ratio = "; ".join(
                    f"{got / _median(engines[kind][transport])[0]:.2f}× ÷ engine ({label})"
                    for kind, label in ENGINES.items()
                )
            elif (transport, 1) in figures:
                ratio = f"{got / _median(figures[transport, 1])[0]:.2f}× of 1 node"
            else:
                ratio = "-"
            node_cpu = sum(v for name, v in cpu.items() if name.startswith("node"))
            cells.append(
                f"{got:.1f} ({ratio}); CPU µs/msg: nodes {node_cpu:.0f}, "
                f"daemon {cpu.get('daemon', 0):.0f}"
            )
        div = "÷ engine" if nodes == 1 else "÷ 1 node"
        print(f"| server {name} msgs/s, {nodes} node(s) ({div}) | {cells[0]} | {cells[1]} |")


def _median(runs: Runs) -> tuple[float, dict[str, float]]:
    """The median msgs/s of ``runs`` and the median CPU figures, each on its own."""
    names = runs[0][1].keys()
    return statistics.median(r for r, _ in runs), {
        name: statistics.median(cpu.get(name, 0.0) for _, cpu in runs) for name in names
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=8, help="K concurrent writers")
    parser.add_argument("--seconds", type=float, default=8.0, help="per throughput figure")
    parser.add_argument("--messages", type=int, default=200, help="latency samples")
    parser.add_argument("--rounds", type=int, default=5, help="SIGKILL rounds")
    parser.add_argument(
        "--watch-secs",
        type=float,
        default=10.0,
        help="how long node B is watched after each SIGKILL",
    )
    parser.add_argument("--mongo-url", help="a running server instead of a fresh SecantusDB")
    parser.add_argument(
        "--compare",
        metavar="DIR",
        help="also measure msgs/s with server.py from DIR (another checkout, "
        "e.g. `git worktree add DIR main`), each figure back to back",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy record (raw, 100 Hz) each node and the daemon during each msgs/s "
        "figure into DIR (py-spy must be installed in the venv; not a dependency)",
    )
    parser.add_argument(
        "--transports",
        default="rest,ws",
        help="which msgs/s figures to take: rest, ws or both (rest,ws)",
    )
    parser.add_argument(
        "--nodes",
        default="1,2",
        help="through how many nodes: 1, 2 or both (1,2)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="take the engine and every msgs/s figure this many times (the table: medians)",
    )
    parser.add_argument(
        "--only-rates",
        action="store_true",
        help="stop after the msgs/s figures (no latency, no SIGKILL rounds)",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
