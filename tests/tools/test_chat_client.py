"""The terminal client (tools/chat_client.py) as a user runs it, against a real server."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

import pytest

from tests.helpers import ROOT, make_store


@pytest.mark.gen_test(timeout=30)
async def test_the_client_sends_typed_lines_and_closes_with_1000_at_end_of_input(server, caplog):
    caplog.set_level(logging.INFO, logger="chat.access")
    _, store_key = await make_store(server)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        os.path.join(ROOT, "tools", "chat_client.py"),
        "--url",
        server.ws_url,
        "--role",
        "store",
        "--key",
        store_key,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        cwd="/",
    )
    out, _ = await asyncio.wait_for(
        proc.communicate(b'Hello from the terminal\n{"type": "ping", "ref": 7}\n'), 20
    )
    assert proc.returncode == 0
    lines = out.decode().splitlines()
    frames = [json.loads(line) for line in lines if not line.startswith("#")]
    assert frames[0]["type"] == "hello"
    ack = next(f for f in frames if f["type"] == "ack")
    assert ack["message"]["body"] == "Hello from the terminal"
    assert {"type": "pong", "ref": 7} in frames
    assert lines[-1] == "# closed with code 1000"
    closes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ws close")]
    assert closes and closes[-1].endswith("code=1000")
