"""``--demo``: demo accounts and a walkthrough to try the server at once.

On an empty database it creates a demo admin and a demo store and prints their
keys. On a later start it finds the same accounts and reuses them: keys are
stored as digests, so they cannot be shown again, and rotating them on every
start would break whatever the user saved; the walkthrough says how to get
fresh keys with ``rotate-key`` instead. A database that has other accounts but
no demo ones gets no demo accounts (``--demo`` must not add keys to a real
deployment).
"""

from __future__ import annotations

from typing import Any

from storage.base import ChatStorage

DEMO_ADMIN = ("Dana (demo admin)", "dana@example.com")
DEMO_STORE = ("Tech Store (demo)", "store@example.com", "https://example.com/logo.jpg")


async def seed_demo(storage: ChatStorage, config: dict[str, Any], cli: str) -> None:
    """Create or find the demo accounts and print the walkthrough (runs once at
    start-up, before the workers start). ``cli`` is how to run server.py again."""
    admin = next((a for a in await storage.list_admins() if (a.name, a.email) == DEMO_ADMIN), None)
    store = next(
        (s for s in await storage.list_stores() if (s.name, s.email, s.logo_url) == DEMO_STORE),
        None,
    )
    site = f"http://{config['server']['host']}:{config['server']['port']}"
    if admin is None and store is None:
        if await storage.count_accounts():
            print(
                "--demo: the database already has accounts; not creating demo ones.\n"
                f"Create keys with: {cli} create-admin --name NAME\n"
                f"See accounts with: {cli} list-admins (or list-stores)",
                flush=True,
            )
            return
        admin, admin_key = await storage.create_admin(*DEMO_ADMIN)
        store, store_key = await storage.create_store(*DEMO_STORE)
        keys = CREATED.format(admin_key=admin_key, store_key=store_key)
        browser = BROWSER.format(site=site, admin_key=admin_key, store_key=store_key)
    else:
        keys = REUSED.format(
            cli=cli, admin=_rotate(cli, "admin", admin), store=_rotate(cli, "store", store)
        )
        browser = BROWSER.format(site=site, admin_key="$ADMIN", store_key="$STORE")
    print(keys + browser + WALKTHROUGH.format(base=f"{site}/v1/chat"), flush=True)


def _rotate(cli: str, role: str, account: Any) -> str:
    if account is None:
        return f"# (no demo {role}; create one with: {cli} create-{role} --name NAME)"
    return f"$({cli} rotate-key --{role} {account.id} | tail -1)"


CREATED = """
Demo accounts created (these keys are shown only now):
  ADMIN={admin_key}
  STORE={store_key}
"""

REUSED = """
--demo: reusing the demo accounts already in this database. Their keys are stored
hashed and cannot be shown again; get new ones (the old ones stop working) with:
  ADMIN={admin}
  STORE={store}
"""

BROWSER = """
In a browser (paste the key into the sign-in box; keys never go in URLs):
  agent console: {site}/console/   with the admin key {admin_key}
  store widget:  {site}/widget/    with the store key {store_key}
"""

WALKTHROUGH = """
Try the whole flow in another terminal (after setting ADMIN and STORE as above):
  # the store writes to support (this opens a session; S is its id)
  S=$(curl -s -X POST {base}/store/message/ -H "Authorization: Token $STORE" \\
       -H "Content-Type: application/json" -d '{{"body": "Hello, my payouts stopped"}}' \\
       | python3 -c 'import json, sys; print(json.load(sys.stdin)["session"]["id"])')
  # the admin looks at the queue
  curl -s {base}/admin/sessions/open/ -H "Authorization: Token $ADMIN"
  # the admin claims the session
  curl -s -X POST {base}/admin/session/claim/ -H "Authorization: Token $ADMIN" \\
       -H "Content-Type: application/json" -d "{{\\"session_id\\": $S}}"
  # the admin replies
  curl -s -X POST {base}/admin/message/ -H "Authorization: Token $ADMIN" \\
       -H "Content-Type: application/json" \\
       -d "{{\\"session_id\\": $S, \\"body\\": \\"Looking into it\\"}}"
  # the store reads its session with the whole history
  curl -s {base}/store/session/ -H "Authorization: Token $STORE"
"""
