"""The operators' files: the Grafana dashboard and the Prometheus alert rules
name only metrics a live server exports, and cover what the issue lists."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.helpers import ROOT, Api, ServerProcess, Socket, create_keys
from tests.processes.test_ops import parse_metrics, scripted_flow

DASHBOARD = os.path.join(ROOT, "docs", "grafana", "chat.json")
ALERTS = os.path.join(ROOT, "docs", "prometheus", "alerts.yml")
METRIC_NAME = re.compile(r"\bchat_[a-z0-9_]+\b")
# Histogram and counter series carry these after the family's name.
SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def dashboard_queries() -> list[str]:
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_rules() -> list[dict]:
    with open(ALERTS) as f:
        return [rule for group in yaml.safe_load(f)["groups"] for rule in group["rules"]]


def exported_names(metrics_text: str) -> set[str]:
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in metrics_text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.mark.gen_test(timeout=60)
async def test_every_metric_the_dashboard_and_alerts_query_is_exported_by_a_live_server(
    db_url, processes, tmp_path
):
    (admin_key,), (store_key, waiting_store) = create_keys(db_url, stores=2)
    proc = ServerProcess(db_url).start(str(tmp_path / "log"))
    processes.append(proc)
    # Traffic that touches every family: claims, messages both ways, a waiting
    # session, a socket, the pages, readiness.
    await scripted_flow(proc.base_url, admin_key, store_key)
    api = Api(proc.base_url)
    assert (await api.post("/v1/chat/store/message/", waiting_store, {"body": "q"})).status == 201
    sock = await Socket.connect(f"ws://127.0.0.1:{proc.port}/v1/chat/admin/ws/", admin_key)
    assert (await sock.recv())["type"] == "hello"
    assert (await api.get("/console/")).status == 200
    assert (await api.get("/readyz")).status == 200
    text = (await api.get("/metrics")).json
    sock.close()
    api.close()

    exported = exported_names(text)
    queries = dashboard_queries() + [rule["expr"] for rule in alert_rules()]
    used = {name for query in queries for name in METRIC_NAME.findall(query)}
    assert used, "no chat_* metric found in the dashboard or the alerts"
    missing = sorted(name for name in used if name not in exported)
    assert missing == [], f"queried but not exported: {missing}"
    # Every family the server defines is charted somewhere (suffixes aside).
    families = {name for name in exported if name.startswith("chat_")}
    bases = {re.sub("|".join(f"{s}$" for s in SERIES_SUFFIXES), "", n) for n in families}
    used_bases = {re.sub("|".join(f"{s}$" for s in SERIES_SUFFIXES), "", n) for n in used}
    assert bases - used_bases <= {"chat_actor_restarts", "chat_actor_passivations"}, (
        bases - used_bases
    )

    samples = parse_metrics(text)
    assert samples["chat_storage_ready"] == 1
    assert samples["chat_sessions_open"] == 1
    assert samples["chat_queue_oldest_wait_seconds"] > 0
    assert 'chat_actor_mailbox_depth_bucket{le="500.0"}' in samples  # the alert's bucket


def test_the_dashboard_has_the_panels_operators_asked_for():
    with open(DASHBOARD) as f:
        titles = " | ".join(panel["title"].lower() for panel in json.load(f)["panels"])
    for wanted in (
        "queue length",
        "wait",
        "first-response",
        "messages/s by sender",
        "claims by outcome",
        "sockets by role",
        "mailbox",
        "storage latency",
        "storage errors",
        "http latency by route",
    ):
        assert wanted in titles, wanted


def test_the_alert_rules_cover_wait_storage_readiness_and_mailboxes():
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert "chat_session_wait_seconds_bucket" in rules["ChatQueueWaitHigh"]["expr"]
    assert "chat_storage_errors_total" in rules["ChatStorageErrors"]["expr"]
    assert "chat_storage_ready" in rules["ChatNotReady"]["expr"]
    assert "chat_actor_mailbox_depth" in rules["ChatMailboxNearFull"]["expr"]
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (Debian: apt-get install -y prometheus)",
)
def test_promtool_accepts_the_alert_rules():
    result = subprocess.run(
        ["promtool", "check", "rules", ALERTS], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.gen_test(timeout=60)
async def test_the_readiness_gauge_the_not_ready_alert_reads_follows_storage(
    db_url, processes, tmp_path
):
    proc = ServerProcess(db_url).start(str(tmp_path / "log"))
    processes.append(proc)
    api = Api(proc.base_url)
    assert (await api.get("/readyz")).status == 200
    assert parse_metrics((await api.get("/metrics")).json)["chat_storage_ready"] == 1
    path = db_url[len("sqlite:///") :]
    os.rename(path, path + ".away")
    try:
        assert (await api.get("/readyz")).status == 503
        assert parse_metrics((await api.get("/metrics")).json)["chat_storage_ready"] == 0
    finally:
        os.rename(path + ".away", path)
    assert (await api.get("/readyz")).status == 200
    assert parse_metrics((await api.get("/metrics")).json)["chat_storage_ready"] == 1
    api.close()
