"""The README's ``st run`` against a live server with data: every check, all
four phases, and not one finding.

The same command an API consumer runs (schemathesis.toml, the document as the
server serves it), once per way of holding keys: each operation with the key
of its own kind (the config's two keys), and every operation with the admin
key alone and with the store key alone (``-H``, as a client of one kind
would). The server holds a claimed and a queued session, a closed one and one
claimed by another admin (``World``), so links and ids reach real rows.

Bounded: ``--max-examples`` per operation (MAX_EXAMPLES) and a fixed seed,
with no example database, so each run sends about the same few thousand
requests and takes ~10-20 s on the 2-core test machine.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from tests.live_server import (  # noqa: F401 (server_log: an autouse fixture, here to apply)
    assert_no_traceback,
    server_log,
)

CONFIG = os.path.join(ROOT, "schemathesis.toml")
# The console script beside this interpreter: the venv's, as the README runs it.
ST = os.path.join(os.path.dirname(sys.executable), "st")
MAX_EXAMPLES = 20
SEED = 20261206
PHASES = "examples,coverage,fuzzing,stateful"


def run_st(
    url: str, env: dict[str, str], extra: list[str], cwd: str
) -> subprocess.CompletedProcess:
    """``st run`` as the README has it, bounded; ``cwd`` takes schemathesis's
    cache, so one run's learned state cannot steer the next."""
    command = [
        ST,
        "--config-file",
        CONFIG,
        "run",
        f"{url}/v1/chat/schema/",
        "--checks",
        "all",
        "--phases",
        PHASES,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--no-color",
        *extra,
    ]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("holder", ["each_its_own", "admin", "store"])
def test_st_run_with_every_check_and_phase_finds_nothing(world, holder, tmp_path, caplog):
    env = {**os.environ, "CHAT_ADMIN_KEY": world.admin_key, "CHAT_STORE_KEY": world.store_key}
    extra = (
        [] if holder == "each_its_own" else ["-H", f"Authorization: Token {world.key_for(holder)}"]
    )
    result = run_st(world.url, env, extra, str(tmp_path))
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]  # 1 on any failure or error
    # Every phase ran and passed (none skipped for want of something to run).
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in report, (phase, report[-3000:])
    assert_no_traceback(caplog)
