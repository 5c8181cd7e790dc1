"""The account commands of ``server.py``: create, list, rotate and revoke keys.

Each command opens storage, does one thing, and closes it; it runs beside the
server (another process, possibly another host), which learns of a rotated or
revoked key through storage (``actors/key_watch.py``). Keys are stored as
digests, so a key is printed once, alone on the last line of stdout, and never
again: ``list-*`` shows accounts, not keys. Bad input is an ``AccountError``
(one line, exit 2); an unknown id is a ``NoSuchAccount`` (one line, exit 1).
"""

from __future__ import annotations

import argparse
import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

from cli.startup import opened_storage
from storage.base import ChatStorage
from storage.records import Admin, Role, Store

MAX_NAME_CHARS = 200
# RFC 5321's limit on a forward path.
MAX_EMAIL_CHARS = 254
MAX_URL_CHARS = 2000
# Deliberately loose (one @, a dotted domain, no spaces): the address is only
# shown to people; a full RFC 5322 parser would add a dependency for no gain.
EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


class AccountError(Exception):
    """Bad input to an account command; ``str(error)`` is the one line to show."""


class NoSuchAccount(Exception):
    """The id names no account of that role."""


# --- validation -------------------------------------------------------------------
def clean_name(name: str) -> str:
    """The name, trimmed: non-empty printable text of at most MAX_NAME_CHARS."""
    name = name.strip()
    if not name:
        raise AccountError("--name must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise AccountError(f"--name is {len(name)} characters; at most {MAX_NAME_CHARS}")
    if not name.isprintable():  # control characters, and lone surrogates from bad bytes
        raise AccountError(f"--name {name!r} has characters that are not printable text")
    return name


def clean_email(email: str | None) -> str | None:
    """The address, trimmed, if it looks like one (name@example.com); None stays None."""
    if email is None:
        return None
    email = email.strip()
    if len(email) > MAX_EMAIL_CHARS or not EMAIL.fullmatch(email) or not email.isprintable():
        raise AccountError(f"--email {email!r} is not an email address like name@example.com")
    return email


def clean_logo_url(url: str | None) -> str | None:
    """An https:// URL with a host: the logo is shown in admins' browsers, where
    plain http would be mixed content and other schemes (javascript:, data:)
    are unsafe to render."""
    if url is None:
        return None
    url = url.strip()
    parts = urllib.parse.urlsplit(url)
    if (
        parts.scheme != "https"
        or not parts.hostname
        or len(url) > MAX_URL_CHARS
        or not url.isprintable()
        or any(c.isspace() for c in url)
    ):
        raise AccountError(
            f"--logo-url {url!r} is not an https:// URL like https://example.com/logo.png"
        )
    return url


# --- commands ---------------------------------------------------------------------
async def create_account(
    storage: ChatStorage, role: Role, name: str, email: str | None, logo_url: str | None = None
) -> str:
    """Store a new account; print what it is and return its key."""
    account: Admin | Store
    if role is Role.ADMIN:
        account, key = await storage.create_admin(name, email)
    else:
        account, key = await storage.create_store(name, email, logo_url)
    print(f"Created {role.value} {account.id} ({account.name}). Its key, shown only now:")
    return key


async def list_accounts(storage: ChatStorage, role: Role) -> str:
    """The accounts of ``role`` as a table (id, name, email[, logo]); never keys."""
    header: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    if role is Role.ADMIN:
        header = ("id", "name", "email")
        rows = [(a.id, a.name, a.email) for a in await storage.list_admins()]
    else:
        header = ("id", "name", "email", "logo")
        rows = [(s.id, s.name, s.email, s.logo_url) for s in await storage.list_stores()]
    if not rows:
        return f"No {role.value}s yet; create one with: server.py create-{role.value} --name NAME"
    return format_table(header, rows)


async def rotate_key(storage: ChatStorage, role: Role, account_id: int) -> str:
    """Give the account a new key; print what happened and return the key."""
    key = await storage.rotate_key(role, account_id)
    if key is None:
        raise NoSuchAccount(f"no {role.value} with id {account_id}")
    print(
        f"New key for {role.value} {account_id}; the old key no longer works and its "
        "open sockets are being closed. The new key, shown only now:"
    )
    return key


async def revoke_key(storage: ChatStorage, role: Role, account_id: int) -> str:
    """Leave the account with no working key; return the line to print."""
    if not await storage.revoke_key(role, account_id):
        raise NoSuchAccount(f"no {role.value} with id {account_id}")
    return (
        f"Revoked the key of {role.value} {account_id}: it gets 401 from now on and its "
        f"open sockets are being closed. Give it a new key with: "
        f"server.py rotate-key --{role.value} {account_id}"
    )


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows under a header in left-aligned columns; None shows as ``-``."""
    cells = [list(header)] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


# --- dispatch ---------------------------------------------------------------------
async def run_account_command(config: dict[str, Any], args: argparse.Namespace) -> str:
    """Run one account command; return what to print last (a key, a table, a line)."""
    command = args.command
    if command.startswith("create-"):
        name = clean_name(args.name)
        email = clean_email(args.email)
        logo_url = clean_logo_url(getattr(args, "logo_url", None))
    async with opened_storage(config) as storage:
        if command == "create-admin":
            return await create_account(storage, Role.ADMIN, name, email)
        if command == "create-store":
            return await create_account(storage, Role.STORE, name, email, logo_url)
        if command in ("list-admins", "list-stores"):
            role = Role.ADMIN if command == "list-admins" else Role.STORE
            return await list_accounts(storage, role)
        role, account_id = (Role.ADMIN, args.admin) if args.admin else (Role.STORE, args.store)
        if command == "rotate-key":
            return await rotate_key(storage, role, account_id)
        return await revoke_key(storage, role, account_id)
