"""Which worker a test runs on under ``make test`` (pytest-xdist).

A file's tests share a worker, so a module-scoped fixture (a browser, a fuzzed
server) starts once, as with ``--dist loadfile``. The real-Mongo tier's tests
run in two groups, each on one worker and so on one SecantusDB of its own: the
fault tier (``tests/storage/faults/``) and the rest. SecantusDB is a Python
server, CPU-bound, and the tier's deadlines are tight (1 s storage timeouts):
with one instance per worker (four at once on a 2-core machine) its tests timed
out (17 errors and 6 failures in one run); with all of them on one worker that
worker was the suite's longest chain. Two instances halve the chain, and a
failpoint or step-down one group's test sets never reaches the other's
server. The other files run in parallel.

xdist's own ``xdist_group`` marker would say this per test, but xdist 3.8
applies it by rewriting ``item._nodeid``, which pytest 9 no longer reads; so
the groups are found here, in the controller, from the nodeids and the files.
"""

from __future__ import annotations

import functools
import os
import re

from xdist.scheduler import LoadScopeScheduling

WIRE_GROUP = "wire_server"
WIRE_FAULTS_GROUP = "wire_server_faults"
FAULT_TIER = "tests/storage/faults/"
# The longest groups, longest first (their summed durations in one run of the
# suite on 4 workers: the two wire groups ~155 and ~130 s, then 95 down to 45
# s): handed out before all others, so that none of them starts last and
# runs on alone at the end. The others follow in collection order.
LONG_GROUPS = (
    WIRE_GROUP,
    WIRE_FAULTS_GROUP,
    "tests/handlers/test_schemathesis_cli.py",
    "tests/web/test_console_workflow.py",
    "tests/cli/test_accounts.py",
    "tests/web/test_browser.py",
    "tests/handlers/test_fuzz_api.py",
    "tests/settings/test_settings.py",
    "tests/processes/test_workflow_processes.py",
)
TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
# A function (test or fixture) taking the wire_server fixture.
TAKES_WIRE_SERVER = re.compile(r"def \w+\([^)]*\bwire_server\b")
# A test module importing another's fixtures: from tests.x import (...)
IMPORTS_TEST_MODULE = re.compile(r"^from (tests(?:\.\w+)*\.test_\w+) import", re.MULTILINE)


@functools.cache
def _source(path: str) -> str:
    try:
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


@functools.cache
def on_wire_tier(path: str) -> bool:
    """Whether every test of the file at ``path`` (relative to the repository)
    uses the wire server: a function of it, of its folder's conftest.py, or of
    a test module whose fixtures it imports, takes the ``wire_server`` fixture."""
    source = _source(path)
    if TAKES_WIRE_SERVER.search(source):
        return True
    # A folder whose conftest.py builds its fixtures on the wire server (the
    # fault tier's ``overrides``) puts every test file beside it on the tier.
    if TAKES_WIRE_SERVER.search(_source(os.path.join(os.path.dirname(path), "conftest.py"))):
        return True
    return any(
        TAKES_WIRE_SERVER.search(_source(module.replace(".", "/") + ".py"))
        for module in IMPORTS_TEST_MODULE.findall(source)
    )


def group_of(nodeid: str) -> str:
    """The worker group of one test: one of the wire tier's two, or its file."""
    path = nodeid.split("::")[0]
    # A test parametrized over backends asks for the wire server in its
    # wire-server case only (request.getfixturevalue).
    if "wire-server" in nodeid or on_wire_tier(path):
        return WIRE_FAULTS_GROUP if path.startswith(FAULT_TIER) else WIRE_GROUP
    return path


def start_rank(group: str) -> int:
    """Where a group starts among the others: LONG_GROUPS first, in order."""
    return LONG_GROUPS.index(group) if group in LONG_GROUPS else len(LONG_GROUPS)


class GroupScheduling(LoadScopeScheduling):
    """xdist's load-scope scheduler with our groups as its scopes."""

    def _split_scope(self, nodeid: str) -> str:
        return group_of(nodeid)
