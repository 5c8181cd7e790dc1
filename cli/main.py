"""``python server.py``'s arguments, and running the command they name.

Exit status: 0 done, 1 the server or command could not do its work (port in
use, database unreachable, no such account), 2 bad settings or arguments;
each failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from typing import Any

from cli.startup import StartupError
from settings import DEFAULT_CONFIG_PATH, ConfigError, load_config
from settings.shown import dump_config
from storage.errors import StorageMisconfigured

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The largest id storage can hold (SQLite's INTEGER, MongoDB's int64).
MAX_ID = 2**63 - 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command and its options; argparse exits 2 with a usage line on bad ones."""
    parser = argparse.ArgumentParser(prog="server.py", description="Store support chat server")
    parser.add_argument("--config", help="YAML file of settings (or CHAT_CONFIG)")
    parser.add_argument("--storage", help="storage URL (or CHAT_STORAGE_URL)")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("serve", help="run the server (the default)")
    for p in (parser, run):
        p.add_argument("--port", type=int, help="API port (or CHAT_PORT)")
        p.add_argument(
            "--demo",
            action="store_true",
            help="create demo accounts on an empty database (or reuse them) "
            "and print a walkthrough",
        )
    commands.add_parser("check-config", help="print the effective settings, or the bad one")
    admin = commands.add_parser("create-admin", help="create an admin; prints its key last")
    admin.add_argument("--name", required=True)
    admin.add_argument("--email")
    store = commands.add_parser("create-store", help="create a store; prints its key last")
    store.add_argument("--name", required=True)
    store.add_argument("--email")
    store.add_argument("--logo-url", help="https:// URL of the store's logo")
    commands.add_parser("list-admins", help="list admins (id, name, email); never keys")
    commands.add_parser("list-stores", help="list stores (id, name, email, logo); never keys")
    for name, what in (
        ("rotate-key", "give a new key (printed last); the old one stops working"),
        ("revoke-key", "leave the account with no working key"),
    ):
        cmd = commands.add_parser(name, help=what)
        who = cmd.add_mutually_exclusive_group(required=True)
        who.add_argument("--admin", type=_account_id, metavar="ID")
        who.add_argument("--store", type=_account_id, metavar="ID")
    return parser.parse_args(argv)


def _account_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (a whole number)") from None
    if not 1 <= value <= MAX_ID:
        raise argparse.ArgumentTypeError(f"{text} is not an id (1 to {MAX_ID})")
    return value


def cli_hint(args: argparse.Namespace, config: dict[str, Any]) -> str:
    """How to run this program again on the same database (the venv's python,
    the same settings file, the storage if it is not the default), for hints
    printed to the user."""
    words = [_short_path(sys.executable), _short_path(os.path.join(ROOT, "server.py"))]
    settings_file = args.config or os.environ.get("CHAT_CONFIG")
    if settings_file:
        words += ["--config", settings_file]
    url = config["storage"]["url"]
    if url != load_config(settings_file, environ={})["storage"]["url"]:
        words += ["--storage", url]
    return shlex.join(words)


def _short_path(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` names (serve by default); return the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    overrides: dict[str, dict[str, Any]] = {}
    if args.storage:
        overrides["storage"] = {"url": args.storage}
    if getattr(args, "port", None) is not None:
        overrides["server"] = {"port": args.port}
    from cli.accounts import AccountError, NoSuchAccount, run_account_command
    from cli.serve import serve

    try:
        config = load_config(args.config, overrides=overrides)
        if args.command == "check-config":
            print(
                f"# effective settings: {DEFAULT_CONFIG_PATH} < "
                f"{args.config or os.environ.get('CHAT_CONFIG') or '(no --config)'} "
                f"< environment < flags; secrets shown as ***"
            )
            print(dump_config(config), end="")
            return 0
        if args.command not in (None, "serve"):
            print(asyncio.run(run_account_command(config, args)))
            return 0
        return serve(config, demo=args.demo, cli=cli_hint(args, config))
    except (ConfigError, AccountError, StorageMisconfigured) as exc:  # exit 2
        print(f"server.py: {exc}", file=sys.stderr)
        return 2
    except (StartupError, NoSuchAccount) as exc:
        print(f"server.py: {exc}", file=sys.stderr)
        return 1
