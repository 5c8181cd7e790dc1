"""The command line: ``python server.py [COMMAND]``.

``main.py`` parses the arguments and runs a command; ``serve.py`` starts the
server (bind, prepare storage, one event loop per worker); ``workers.py``
forks and watches the workers; ``startup.py`` holds what both a command and
the server need before they run (storage opened, the one-line start-up
error); ``accounts.py`` the account commands; ``demo.py`` ``--demo``.

Imports here stay light: ``prometheus_client`` must not be imported before
``serve`` has set PROMETHEUS_MULTIPROC_DIR for its workers, so the server's
rooms (handlers, actors) are imported inside the functions that need them.
"""
