"""The layers settings come from: files, the environment, the command line.

Layers, each overriding the one before: ``config.yaml`` beside ``server.py``
(every key and its default) < the file named by ``--config`` or ``CHAT_CONFIG``
< the environment (``CHAT_SECTION__KEY`` for any key, plus the older
``CHAT_STORAGE_URL``, ``CHAT_HOST``, ``CHAT_PORT``, ``CHAT_PROCESSES``) <
command-line flags. Each layer remembers where it came from, so an error can
name the file or variable that set a bad key.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic_settings import EnvSettingsSource
from pydantic_settings.exceptions import SettingsError
from pydantic_settings.sources.utils import parse_env_vars

from settings.schema import ENV_DELIMITER, ENV_PREFIX, Settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG_PATH = os.path.join(ROOT, "config.yaml")
# The short names that predate CHAT_SECTION__KEY; a CHAT_SECTION__KEY wins over them.
LEGACY_ENV = {
    "CHAT_STORAGE_URL": ("storage", "url"),
    "CHAT_HOST": ("server", "host"),
    "CHAT_PORT": ("server", "port"),
    "CHAT_PROCESSES": ("server", "processes"),
}


class ConfigError(Exception):
    """A bad setting: ``str(error)`` is the one line to show before exiting 2."""


@dataclass
class Layer:
    """One source of settings: where it came from, and the folder its relative
    paths are resolved against."""

    label: str
    folder: str
    data: dict[str, Any]
    names: dict[tuple[str, ...], str] | None = None  # env: the variable behind each key

    def origin(self, loc: tuple[Any, ...]) -> str | None:
        """Where this layer set the key at ``loc`` (or a key under it), if it did."""
        node: Any = self.data
        for part in loc:
            if (isinstance(node, dict) and part in node) or (
                isinstance(node, list) and isinstance(part, int) and part < len(node)
            ):
                node = node[part]
            else:
                return None
        if self.names is not None:
            for length in range(len(loc), 0, -1):
                if loc[:length] in self.names:
                    return f"from {self.names[loc[:length]]}"
            return f"from {env_name(loc)}"
        return self.label


def merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    """Merge ``update`` into ``into`` in place, section by section."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def file_layer(path: str) -> Layer:
    """The settings in the YAML file at ``path``; a missing, unreadable or
    malformed file is a ``ConfigError``."""
    path = os.path.abspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config: {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config: {path} must be a mapping of sections (server:, storage:, "
            f"...), not {type(data).__name__}"
        )
    return Layer(f"in {path}", os.path.dirname(path), data)


def env_layer(environ: Mapping[str, str]) -> Layer:
    """The settings the CHAT_* variables of ``environ`` set; an unknown section
    or a list or mapping that is not JSON is a ``ConfigError``."""
    data: dict[str, Any] = {}
    names: dict[tuple[str, ...], str] = {}
    for name, (section, key) in LEGACY_ENV.items():
        if environ.get(name):
            data.setdefault(section, {})[key] = environ[name]
            names[(section, key)] = name
    sections = set(Settings.model_fields)
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or ENV_DELIMITER not in upper:
            continue
        section = upper[len(ENV_PREFIX) :].split(ENV_DELIMITER)[0].lower()
        if section not in sections:
            rest = upper[len(ENV_PREFIX) + len(section) :]
            raise ConfigError(
                f"config: unknown setting {name} (in the environment)"
                + did_you_mean(
                    section, sections, lambda s, rest=rest: ENV_PREFIX + s.upper() + rest
                )
            )
    try:
        merge(data, _EnvironSource(environ)())
    except SettingsError as exc:
        field = re.search(r'field "(\w+)"', str(exc))
        which = env_name((field.group(1), "...")) if field else "a CHAT_SECTION__KEY variable"
        raise ConfigError(
            f"config: {which} in the environment is not valid: expected JSON "
            f"for a list or mapping, e.g. "
            f"CHAT_SERVER__ALLOWED_ORIGINS='[\"https://a.example\"]'"
        ) from None
    return Layer("in the environment", os.getcwd(), data, names)


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' CHAT_SECTION__KEY parsing, over a given mapping (tests pass
    their own environment; the server passes os.environ)."""

    def __init__(self, environ: Mapping[str, str]):
        self._environ = environ
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def env_name(loc: tuple[Any, ...]) -> str:
    """The CHAT_SECTION__KEY variable that sets the key at ``loc``."""
    return ENV_PREFIX + ENV_DELIMITER.join(str(part).upper() for part in loc)


def did_you_mean(name: str, valid: Any, spell: Any) -> str:
    """The end of an unknown-key error: the closest valid name, spelled by
    ``spell``, or the list of valid names."""
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f"; did you mean {spell(close[0])}?" if close else f"; valid: {', '.join(valid)}"
