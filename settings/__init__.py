"""Settings: the schema of ``config.yaml`` (``schema.py``), the layers it is
loaded from (``layers.py``), a bad value described in one line
(``describe.py``), loading them all (``load.py``), and the settings as people
may see them, secrets hidden (``shown.py``).

Named ``settings``, not ``config``: ``config`` is the loaded dict every part of
the server is handed (``config["server"]["port"]``), and ``config.yaml`` the
file; this package is what turns the one into the other.
"""

from settings.layers import DEFAULT_CONFIG_PATH, ConfigError, merge
from settings.load import load_config

__all__ = ["DEFAULT_CONFIG_PATH", "ConfigError", "load_config", "merge"]
