"""The web pages as served (no browser needed): what the console and widget
rely on from the server, their headers, and the demo's pointers to them."""

from __future__ import annotations

import re

import pytest

from tests.helpers import Api, ServerProcess, Socket, make_admin, make_store, open_session


@pytest.mark.gen_test
async def test_pages_and_their_modules_are_served_with_a_strict_csp(server):
    site = Api(server.url)
    for path, kind in (
        ("/console/", "text/html"),
        ("/widget/", "text/html"),
        ("/console/main.js", "javascript"),
        ("/shared/socket.js", "javascript"),
        ("/shared/base.css", "text/css"),
    ):
        reply = await site.get(path)
        assert reply.status == 200, path
        assert kind in reply.headers["Content-Type"], (path, reply.headers["Content-Type"])
        csp = reply.headers["Content-Security-Policy"]
        for rule in (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ):
            assert rule in csp, (path, rule)
        assert "unsafe" not in csp
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Referrer-Policy"] == "no-referrer"
    site.close()


@pytest.mark.gen_test
async def test_pages_have_no_inline_script_or_style_for_the_csp_to_block(server):
    site = Api(server.url)
    for path in ("/console/", "/widget/"):
        html = (await site.get(path)).json
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], path
        assert "<style" not in html and " style=" not in html and " on" + "click=" not in html
    site.close()


@pytest.mark.gen_test
async def test_a_page_without_its_slash_redirects_and_nothing_outside_web_is_served(server):
    site = Api(server.url)
    redirect = await site.client.fetch(
        server.url + "/console", follow_redirects=False, raise_error=False
    )
    assert redirect.code == 301 and redirect.headers["Location"] == "/console/"
    for path in (
        "/console/../server.py",
        "/shared/../../config.yaml",
        "/web/console/index.html",
        "/console/%2e%2e/%2e%2e/server.py",
    ):
        assert (await site.get(path)).status in (403, 404), path
    site.close()


@pytest.mark.gen_test
async def test_session_claimed_names_the_winner_so_a_losing_console_can_say_who(server, api):
    _, store_key = await make_store(server)
    dana, dana_key = await make_admin(server, "Dana")
    _, sam_key = await make_admin(server, "Sam")
    sam = await Socket.connect(f"{server.ws_url}/v1/chat/admin/ws/", sam_key)
    await sam.recv_type("hello")
    session = await open_session(api, store_key)
    reply = await api.post("/admin/session/claim/", dana_key, {"session_id": session["id"]})
    assert reply.status == 200
    frame = await sam.recv_type("session_claimed")
    assert frame["admin"] == {"id": dana.id, "name": "Dana"}
    assert frame["session"]["admin_id"] == dana.id
    lost = await api.post("/admin/session/claim/", sam_key, {"session_id": session["id"]})
    assert lost.status == 409
    sam.close()


def test_the_demo_prints_where_the_console_and_widget_are_with_keys_beside_them(
    db_url, processes, tmp_path
):
    log = tmp_path / "demo.log"
    proc = ServerProcess(db_url, args=["--demo"])
    processes.append(proc)
    proc.start(str(log))
    out = log.read_text()
    admin_key = re.search(r"ADMIN=([0-9a-f]{40})", out).group(1)
    store_key = re.search(r"STORE=([0-9a-f]{40})", out).group(1)
    assert re.search(rf"{re.escape(proc.base_url)}/console/ .*{admin_key}", out)
    assert re.search(rf"{re.escape(proc.base_url)}/widget/ .*{store_key}", out)
    for url in re.findall(r"https?://\S+", out):  # keys never in a URL
        assert admin_key not in url and store_key not in url, url
