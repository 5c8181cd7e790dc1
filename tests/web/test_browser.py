"""The console and the widget in a real browser: Playwright driving Debian's
Chromium against a real server process.

Skipped, with the reason, where Playwright or Chromium is missing (``.ci/run``
installs Chromium first, so CI runs them). Screenshots of both pages go to
``$CHAT_SCREENSHOT_DIR`` (set it to docs/screenshots/ to refresh the README's).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from tests.helpers import ServerProcess, copy_database, run_cli
from tests.web.chromium import NEEDS_CHROMIUM, expect

# Screenshots land outside the tree unless asked for, so a test run leaves the
# checkout clean; `CHAT_SCREENSHOT_DIR=docs/screenshots make test` refreshes the README's.
SCREENSHOT_DIR = os.path.abspath(
    os.environ.get("CHAT_SCREENSHOT_DIR") or os.path.join(tempfile.gettempdir(), "chat-screenshots")
)
# Long enough for a reconnect after the backoff has grown during an outage.
RECONNECT_TIMEOUT_MS = 20_000

pytestmark = NEEDS_CHROMIUM


@pytest.fixture(scope="module")
def accounts(tmp_path_factory) -> tuple[str, dict[str, str]]:
    """Two admins and a store, made once per module by the real CLI: the
    database's URL and the keys. Each test's ``site`` runs on a copy."""
    url = f"sqlite:///{tmp_path_factory.mktemp('accounts')}/browser.sqlite3"
    env = {"CHAT_STORAGE_URL": url}
    keys = {
        "dana": last_line(run_cli("create-admin", "--name", "Dana", env=env)),
        "sam": last_line(run_cli("create-admin", "--name", "Sam", env=env)),
        "store": last_line(
            run_cli(
                "create-store",
                "--name",
                "Tech Store",
                "--logo-url",
                "https://example.com/logo.jpg",
                env=env,
            )
        ),
    }
    return url, keys


@pytest.fixture
def site(tmp_path, processes, accounts):
    """A server process on a fresh copy of ``accounts``' database."""
    template, keys = accounts
    server = ServerProcess(copy_database(template, str(tmp_path)))
    processes.append(server)
    server.start(str(tmp_path / "server.log"))
    server.keys = dict(keys)
    return server


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


class NetworkSwitch:
    """Routes one page's WebSockets through Playwright, so a test can cut the
    connection (both ends see it close) and refuse new ones until restored."""

    def __init__(self, page):
        self.down = False
        self.live = []
        page.route_web_socket(re.compile(r".*/ws/?$"), self._route)

    def _route(self, ws) -> None:
        if self.down:
            ws.close(code=1011, reason="network down")
            return
        ws.connect_to_server()
        self.live.append(ws)

    def drop(self) -> None:
        self.down = True
        for ws in self.live:
            ws.close(code=4000, reason="network dropped")
        self.live.clear()

    def restore(self) -> None:
        self.down = False


def open_console(browser, site, who: str, width: int = 1280, switch: bool = False):
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.switch = NetworkSwitch(page) if switch else None
    page.goto(site.base_url + "/console/")
    page.fill("#key", site.keys[who])
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#whoami")).to_contain_text(who.capitalize())
    expect(page.locator("#banner")).to_be_hidden()
    return page


def open_widget(browser, site, switch: bool = False):
    context = browser.new_context(viewport={"width": 480, "height": 720})
    page = context.new_page()
    page.switch = NetworkSwitch(page) if switch else None
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(site.base_url + "/widget/")
    page.fill("#key", site.keys["store"])
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#status")).to_contain_text("Write to us")
    return page


def say(page, text: str) -> None:
    page.fill("#draft", text)
    page.press("#draft", "Enter")


def words(page):
    """The store and admin messages of the page's chat log, as shown."""
    return page.locator("#log .msg:not(.system) .body")


def wait_until(page, predicate, timeout_secs: float = 10.0):
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(50)  # lets Playwright deliver events meanwhile
    raise AssertionError("condition not met in time")


def screenshot(page, name: str) -> None:
    os.makedirs(SCREENSHOT_DIR, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOT_DIR, name))


def store_history(site) -> list[dict]:
    request = urllib.request.Request(
        site.base_url + "/v1/chat/store/session/?limit=1000",
        headers={"Authorization": f"Token {site.keys['store']}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["messages"]


def test_a_chat_goes_from_widget_to_one_of_two_racing_consoles_and_survives_a_dropped_network(
    browser, site
):
    dana = open_console(browser, site, "dana", switch=True)
    sam = open_console(browser, site, "sam", switch=True)
    store = open_widget(browser, site, switch=True)

    say(store, "Hello, my payouts stopped")
    for console in (dana, sam):  # live, no reload
        row = console.locator("#queue li")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("Tech Store")
        expect(row).to_contain_text("Hello, my payouts stopped")

    # Both click claim; hold both requests until both are in flight, then let
    # them race to the server together.
    held = []
    for console in (dana, sam):
        console.route("**/admin/session/claim/", lambda route: held.append(route))
    dana.click("#queue li button")
    sam.click("#queue li button")
    wait_until(dana, lambda: len(held) == 2)
    for route in held:
        route.continue_()

    winner, loser = wait_until(
        dana,
        lambda: (
            (dana, sam)
            if dana.locator("#chat").is_visible() and sam.locator("#notice").is_visible()
            else (sam, dana)
            if sam.locator("#chat").is_visible() and dana.locator("#notice").is_visible()
            else None
        ),
    )
    winner_name = "Dana" if winner is dana else "Sam"
    expect(loser.locator("#notice")).to_contain_text(f"Taken by {winner_name}")
    expect(loser.locator("#queue li")).to_have_count(0)
    expect(loser.locator("#chat")).to_be_hidden()
    expect(winner.locator("#queue li")).to_have_count(0)
    expect(winner.locator("#mine li")).to_have_count(1)
    expect(winner.locator("#log .msg.system")).to_contain_text(f"{winner_name} joined the chat")
    expect(store.locator("#status")).to_have_text(f"{winner_name} joined")

    # Messages and typing, both ways.
    say(winner, "Looking into it now")
    expect(words(store)).to_have_text(["Hello, my payouts stopped", "Looking into it now"])
    store.type("#draft", "Th")
    expect(winner.locator("#typing")).to_contain_text("Tech Store is typing")
    store.fill("#draft", "")
    winner.wait_for_timeout(
        1100
    )  # the server drops typing within 1 s of the last (sent with the reply)
    winner.type("#draft", "On")
    expect(store.locator("#typing")).to_contain_text(f"{winner_name} is typing")
    winner.fill("#draft", "")
    say(store, "Thanks")
    expect(words(winner)).to_have_text(
        ["Hello, my payouts stopped", "Looking into it now", "Thanks"]
    )
    expect(winner.locator("#log .msg.pending")).to_have_count(0)

    # The admin's network drops while the store writes and the admin answers.
    winner.switch.drop()
    expect(winner.locator("#banner")).to_contain_text("Reconnecting")
    for n in (1, 2, 3):
        say(store, f"while you were away {n}")
    expect(words(store)).to_have_count(6)
    say(winner, "sent while offline")
    expect(winner.locator("#log .msg.pending")).to_contain_text("sending")
    winner.wait_for_timeout(1500)
    winner.switch.restore()
    expect(winner.locator("#banner")).to_be_hidden(timeout=RECONNECT_TIMEOUT_MS)

    everything = [
        "Hello, my payouts stopped",
        "Looking into it now",
        "Thanks",
        "while you were away 1",
        "while you were away 2",
        "while you were away 3",
        "sent while offline",
    ]
    expect(words(winner)).to_have_text(everything)  # each once, in order
    expect(winner.locator("#log .msg.pending")).to_have_count(0)
    expect(words(store)).to_have_text(everything)
    stored = [m["body"] for m in store_history(site) if m["sender"] != "system"]
    assert stored == everything  # the resent message was stored once
    screenshot(winner, "console.png")
    screenshot(store, "widget.png")

    # The store's network drops too: it catches up the same way.
    store.switch.drop()
    expect(store.locator("#banner")).to_contain_text("Reconnecting")
    say(winner, "are you still there?")
    say(store, "yes, I am")
    expect(store.locator("#log .msg.pending")).to_contain_text("sending")
    store.wait_for_timeout(1000)
    store.switch.restore()
    expect(store.locator("#banner")).to_be_hidden(timeout=RECONNECT_TIMEOUT_MS)
    everything += ["are you still there?", "yes, I am"]
    expect(words(store)).to_have_text(everything)
    expect(words(winner)).to_have_text(everything)

    winner.click("#close")
    expect(store.locator("#status")).to_contain_text("closed")
    expect(winner.locator("#mine li")).to_have_count(0)
    expect(winner.locator("#chat-status")).to_have_text("Closed")
    for page in (winner, loser, store):
        assert page.dialogs == []


def test_a_script_in_a_body_is_shown_as_text_under_a_strict_csp(browser, site):
    for path in ("/console/", "/widget/", "/console/main.js", "/shared/socket.js"):
        with urllib.request.urlopen(site.base_url + path, timeout=10) as response:
            csp = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
            assert "frame-ancestors 'none'" in csp
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Referrer-Policy"] == "no-referrer"
    with pytest.raises(urllib.error.HTTPError) as outside:  # nothing outside web/ is served
        urllib.request.urlopen(site.base_url + "/console/../server.py", timeout=10)
    assert outside.value.code in (403, 404)

    attack = "<img src=x onerror=alert(1)>"
    console = open_console(browser, site, "dana")
    store = open_widget(browser, site)
    say(store, attack)
    expect(console.locator("#queue li .last")).to_have_text(attack)
    console.click("#queue li button")
    expect(words(console)).to_have_text([attack])
    expect(words(store)).to_have_text([attack])
    for page in (console, store):
        assert page.locator("#log img").count() == 0
        assert page.dialogs == []
        assert site.keys["dana"] not in page.url and site.keys["store"] not in page.url


def test_the_console_works_by_keyboard_at_phone_width_and_badges_the_title_when_hidden(
    browser, site
):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    console = context.new_page()
    console.goto(site.base_url + "/console/")
    console.focus("#key")
    console.keyboard.type(site.keys["sam"])
    console.keyboard.press("Enter")
    expect(console.locator("#whoami")).to_contain_text("Sam")
    unnamed = console.evaluate("""() => [...document.querySelectorAll('button, input, textarea')]
        .filter((c) => !(c.getAttribute('aria-label') || c.labels?.length || c.textContent.trim()))
        .map((c) => c.outerHTML)""")
    assert unnamed == []

    # In the background, a new session badges the title.
    console.evaluate("""() => Object.defineProperty(document, 'hidden',
                                                    {configurable: true, get: () => true})""")
    store = open_widget(browser, site)
    say(store, "Is anyone there?")
    expect(console.locator("#queue li")).to_have_count(1)
    expect(console).to_have_title(re.compile(r"^\(1\) "))
    console.evaluate("""() => { Object.defineProperty(document, 'hidden',
                                                      {configurable: true, get: () => false});
                                document.dispatchEvent(new Event('visibilitychange')); }""")
    expect(console).to_have_title("Support console")

    console.focus("#queue li button")
    console.keyboard.press("Enter")
    expect(console.locator("#draft")).to_be_focused()
    console.keyboard.type("Yes, Sam here")
    console.keyboard.press("Enter")
    expect(words(store)).to_have_text(["Is anyone there?", "Yes, Sam here"])
    assert console.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(console, "console-phone.png")


def rest(site, path: str, key: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        site.base_url + "/v1/chat" + path,
        method="POST" if body is not None else "GET",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_my_sessions_sort_by_activity_count_unread_and_page_back_through_history(browser, site):
    other_store = last_line(
        run_cli(
            "create-store",
            "--name",
            "Other Store",
            env={"CHAT_STORAGE_URL": site.env["CHAT_STORAGE_URL"]},
        )
    )
    dana = site.keys["dana"]
    for n in range(1, 61):
        first = rest(site, "/store/message/", site.keys["store"], {"body": f"m{n}"})
    second = rest(site, "/store/message/", other_store, {"body": "other hello"})
    for opened in (first, second):
        rest(site, "/admin/session/claim/", dana, {"session_id": opened["session"]["id"]})

    console = open_console(browser, site, "dana")
    names = console.locator("#mine li .store-name")
    expect(names).to_have_text(["Other Store", "Tech Store"])  # latest claim first

    # A long history opens on its newest page (50 messages: the last is the
    # "joined" notice); older pages load on demand.
    console.click("#mine li:has-text('Tech Store') button")
    expect(words(console)).to_have_count(49)
    expect(words(console).first).to_have_text("m12")
    rest(site, "/store/message/", site.keys["store"], {"body": "m61"})
    expect(words(console).last).to_have_text("m61")
    expect(names).to_have_text(["Tech Store", "Other Store"])  # latest message first
    console.click("#older")
    expect(words(console)).to_have_count(61)
    expect(words(console).first).to_have_text("m1")
    expect(console.locator("#older")).to_be_hidden()

    # Messages to the chat that is not open count as unread until it is opened:
    # the server's count, so "other hello", never shown either, counts too.
    other_row = console.locator("#mine li:has-text('Other Store')")
    expect(other_row.locator(".unread")).to_have_text("1")
    rest(site, "/store/message/", other_store, {"body": "are you there?"})
    rest(site, "/store/message/", other_store, {"body": "hello?"})
    expect(other_row.locator(".unread")).to_have_text("3")
    expect(names).to_have_text(["Other Store", "Tech Store"])
    expect(console.locator("#mine li:has-text('Tech Store') .unread")).to_be_hidden()
    other_row.locator("button").click()
    expect(words(console)).to_have_text(["other hello", "are you there?", "hello?"])
    expect(other_row.locator(".unread")).to_be_hidden()
