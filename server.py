#!/usr/bin/env python3
"""The store support chat server: the entry point of ``python server.py``.

    python server.py [serve] [--config PATH] [--port N] [--storage URL] [--demo]
    python server.py check-config
    python server.py create-admin --name NAME [--email EMAIL]
    python server.py create-store --name NAME [--email EMAIL] [--logo-url URL]
    python server.py list-admins | list-stores
    python server.py rotate-key --admin ID | --store ID
    python server.py revoke-key --admin ID | --store ID

Settings (``settings/``) come from ``config.yaml`` beside this file,
then the file named by ``--config`` or CHAT_CONFIG, then CHAT_* environment
variables, then flags. Exit status: 0 done, 1 the server or command could not
do its work (port in use, database unreachable, no such account), 2 bad
settings or arguments; each failure is one line on stderr.

The command line itself is ``cli/``; this file only runs it.
"""

import sys

from cli.main import main

if __name__ == "__main__":
    sys.exit(main())
