"""Settings: the schema of every key in ``config.yaml``, and loading it in layers.

Layers, each overriding the one before: ``config.yaml`` beside ``server.py``
(every key and its default) < the file named by ``--config`` or ``CHAT_CONFIG``
< the environment (``CHAT_SECTION__KEY`` for any key, plus the older
``CHAT_STORAGE_URL``, ``CHAT_HOST``, ``CHAT_PORT``, ``CHAT_PROCESSES``) <
command-line flags. The merged result is validated once against ``Settings``;
the first problem becomes a ``ConfigError`` whose message is one line naming
the key, the value, where it came from and what is expected.

The rest of the server reads settings as a plain nested dict
(``config["server"]["port"]``): ``load_config`` returns the validated model's
``model_dump()``, so only this module knows about pydantic.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import os
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError
from pydantic_settings.sources.utils import parse_env_vars

from storage.workflow import WEBHOOK_EVENTS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG_PATH = os.path.join(ROOT, "config.yaml")
ENV_PREFIX = "CHAT_"
ENV_DELIMITER = "__"
# The short names that predate CHAT_SECTION__KEY; a CHAT_SECTION__KEY wins over them.
LEGACY_ENV = {
    "CHAT_STORAGE_URL": ("storage", "url"),
    "CHAT_HOST": ("server", "host"),
    "CHAT_PORT": ("server", "port"),
    "CHAT_PROCESSES": ("server", "processes"),
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """A bad setting: ``str(error)`` is the one line to show before exiting 2."""


# --- value types: each description is the "expected ..." of its error line ------------
def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _not_bool(value: Any) -> Any:
    # pydantic reads true as 1; in a settings file that is a typo, not a number.
    if isinstance(value, bool):
        raise ValueError("true/false is not a number")
    return value


NoBool = BeforeValidator(_not_bool)


def _check_storage_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        if not url[len("sqlite:///"):]:
            raise ValueError("no file after sqlite:///")
        return url
    if url.startswith("mongodb+srv://"):
        return url  # parsing it would look the host up in DNS; the driver checks it
    if url.startswith("mongodb://"):
        from pymongo.errors import PyMongoError
        from pymongo.uri_parser import parse_uri

        try:
            parse_uri(url)
        except (PyMongoError, ValueError) as exc:
            raise ValueError(str(exc)) from exc
        return url
    raise ValueError("unsupported scheme")


def _check_bind(value: str) -> str:
    if value == "":
        return value
    _host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("no valid port after the last ':'")
    return value


def _check_page_size(value: int) -> int:
    if value < 512 or value > 65536 or value & (value - 1):
        raise ValueError("not a power of two from 512 to 65536")
    return value


def _check_network(value: str) -> str:
    ipaddress.ip_network(value, strict=False)  # raises ValueError, which pydantic reports
    return value


Port = Annotated[int, NoBool, Field(ge=1, le=65535, description="an integer from 1 to 65535")]
Count = Annotated[int, NoBool, Field(ge=0, description="an integer >= 0")]
PositiveInt = Annotated[int, NoBool, Field(ge=1, description="an integer >= 1")]
Seconds = Annotated[float, NoBool, Field(gt=0, description="a number of seconds > 0")]
SecondsOrOff = Annotated[float, NoBool,
                         Field(ge=0, description="a number of seconds >= 0 (0 = off)")]
Rate = Annotated[float, NoBool, Field(ge=0, description="a number >= 0 (0 = off)")]
Text = Annotated[str, Field(description="a string")]
NonEmptyText = Annotated[str, Field(min_length=1, description="a non-empty string")]
StringList = Annotated[list[str], Field(description="a list of strings")]
NetworkList = Annotated[
    list[Annotated[str, AfterValidator(_check_network)]],
    Field(description="a list of IP addresses or CIDR networks, e.g. [10.0.0.0/8]")]
StorageUrl = Annotated[str, AfterValidator(_check_storage_url),
                       Field(description="sqlite:///PATH or mongodb://HOST[:PORT]/DB")]
Bind = Annotated[str, AfterValidator(_check_bind),
                 Field(description='"" or HOST:PORT with a port from 1 to 65535')]
Synchronous = Annotated[Literal["OFF", "NORMAL", "FULL", "EXTRA"], BeforeValidator(_upper),
                        Field(description="one of OFF, NORMAL, FULL, EXTRA")]
PageSize = Annotated[int, NoBool, AfterValidator(_check_page_size),
                     Field(description="a power of two from 512 to 65536")]
LogLevel = Annotated[Literal[LOG_LEVELS], BeforeValidator(_upper),
                     Field(description="one of " + ", ".join(LOG_LEVELS))]
LogFormat = Annotated[Literal["text", "json"], BeforeValidator(_lower),
                      Field(description="text or json")]
WriteConcern = Annotated[NonEmptyText | Count, Field(
    description='"majority", a tag set name or a number of nodes >= 0')]
Flag = Annotated[bool, Field(description="true or false")]


# --- the schema: one class per section of config.yaml; defaults live in config.yaml ---
class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    host: NonEmptyText
    port: Port
    processes: Count
    pin_to_cpus: Flag
    allowed_origins: StringList
    max_body_bytes: PositiveInt
    shutdown_timeout_secs: Seconds
    trusted_proxies: NetworkList
    idle_connection_timeout_secs: Seconds
    body_timeout_secs: Seconds
    header_timeout_secs: Seconds


class StorageSettings(Section):
    url: StorageUrl
    sqlite_synchronous: Synchronous
    sqlite_page_size: PageSize
    mongo_write_concern: WriteConcern
    mongo_retry_writes: Flag
    mongo_timeout_ms: PositiveInt


class ChatLimits(Section):
    max_sessions_per_admin: Count
    requeue_offline_secs: SecondsOrOff
    requeue_unanswered_secs: SecondsOrOff
    requeue_sweep_secs: Seconds


class ActorSettings(Section):
    mailbox_size: PositiveInt
    idle_timeout_secs: Seconds
    max_restarts: Count
    restart_window_secs: Seconds


class WebSocketSettings(Section):
    ping_interval_secs: SecondsOrOff
    ping_timeout_secs: SecondsOrOff
    max_message_bytes: PositiveInt
    auth_timeout_secs: Seconds
    max_buffered_bytes: PositiveInt


class EventSettings(Section):
    poll_interval_secs: Seconds
    node: Text


class RateLimits(Section):
    rate_per_sec: Rate
    burst: PositiveInt


class OpsSettings(Section):
    bind: Bind


class LoggingSettings(Section):
    level: LogLevel
    format: LogFormat


class PresenceSettings(Section):
    heartbeat_secs: Seconds
    expiry_secs: Seconds

    @model_validator(mode="after")
    def _expiry_outlasts_heartbeats(self) -> "PresenceSettings":
        if self.expiry_secs <= self.heartbeat_secs:
            raise ValueError("expiry_secs must be longer than heartbeat_secs")
        return self


def _check_webhook_url(url: str) -> str:
    if not url.startswith(("http://", "https://")) or len(url) < len("http://x"):
        raise ValueError(f"the scheme of {url[:40]!r} is not http or https")
    return url


WebhookUrl = Annotated[str, AfterValidator(_check_webhook_url),
                       Field(description="an http:// or https:// URL")]
WebhookEvents = Annotated[list[Literal[WEBHOOK_EVENTS]], Field(
    min_length=1, description="a non-empty list of " + ", ".join(WEBHOOK_EVENTS))]


class WebhookSpec(Section):
    url: WebhookUrl
    events: WebhookEvents
    secret: NonEmptyText


class WebhookDelivery(Section):
    timeout_secs: Seconds
    max_retry_secs: Seconds
    backoff_initial_secs: Seconds
    backoff_max_secs: Seconds
    lease_secs: Seconds
    poll_secs: Seconds


def _section(kind: type, name: str) -> Any:
    return Annotated[kind, Field(description=f"a mapping of the {name} settings")]


class Settings(BaseSettings):
    """Every setting of the server. Built by ``load_config``, never from os.environ
    directly (the environment is one of the layers it merges)."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix=ENV_PREFIX,
                                      env_nested_delimiter=ENV_DELIMITER)

    server: _section(ServerSettings, "server")
    storage: _section(StorageSettings, "storage")
    chat: _section(ChatLimits, "chat")
    actors: _section(ActorSettings, "actors")
    websocket: _section(WebSocketSettings, "websocket")
    events: _section(EventSettings, "events")
    limits: _section(RateLimits, "limits")
    ops: _section(OpsSettings, "ops")
    logging: _section(LoggingSettings, "logging")
    presence: _section(PresenceSettings, "presence")
    webhooks: Annotated[list[WebhookSpec], Field(
        description="a list of {url, events, secret} mappings")]
    webhook_delivery: _section(WebhookDelivery, "webhook_delivery")


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' CHAT_SECTION__KEY parsing, over a given mapping (tests pass
    their own environment; the server passes os.environ)."""

    def __init__(self, environ: Mapping[str, str]):
        self._environ = environ
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty,
                              self.env_parse_none_str)


# --- loading ----------------------------------------------------------------------
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
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return None
        if self.names is not None:
            for length in range(len(loc), 0, -1):
                if loc[:length] in self.names:
                    return f"from {self.names[loc[:length]]}"
            return f"from {_env_name(loc)}"
        return self.label


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None,
                overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The validated settings as a nested dict; raises ``ConfigError``.

    Runs once at start-up (and per CLI command): ``path`` is ``--config``,
    ``environ`` defaults to ``os.environ``, ``overrides`` are the flags.
    """
    environ = os.environ if environ is None else environ
    layers = [_file_layer(DEFAULT_CONFIG_PATH)]
    path = path or environ.get("CHAT_CONFIG")
    if path:
        layers.append(_file_layer(path))
    layers.append(_env_layer(environ))
    layers.append(Layer("on the command line", os.getcwd(), copy.deepcopy(overrides or {})))
    merged: dict[str, Any] = {}
    for layer in layers:
        merge(merged, layer.data)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, layers)) from None
    config = settings.model_dump()
    config["storage"]["url"] = _absolute_sqlite_url(config["storage"]["url"], layers)
    return config


def merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    """Merge ``update`` into ``into`` in place, section by section."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _file_layer(path: str) -> Layer:
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
        raise ConfigError(f"config: {path} must be a mapping of sections (server:, storage:, "
                          f"...), not {type(data).__name__}")
    return Layer(f"in {path}", os.path.dirname(path), data)


def _env_layer(environ: Mapping[str, str]) -> Layer:
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
        section = upper[len(ENV_PREFIX):].split(ENV_DELIMITER)[0].lower()
        if section not in sections:
            rest = upper[len(ENV_PREFIX) + len(section):]
            raise ConfigError(f"config: unknown setting {name} (in the environment)"
                              + _did_you_mean(section, sections,
                                              lambda s: ENV_PREFIX + s.upper() + rest))
    try:
        merge(data, _EnvironSource(environ)())
    except SettingsError as exc:
        field = re.search(r'field "(\w+)"', str(exc))
        which = _env_name((field.group(1), "...")) if field else "a CHAT_SECTION__KEY variable"
        raise ConfigError(f"config: {which} in the environment is not valid: expected JSON "
                          f"for a list or mapping, e.g. "
                          f'CHAT_SERVER__ALLOWED_ORIGINS=\'["https://a.example"]\'') from None
    return Layer("in the environment", os.getcwd(), data, names)


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + ENV_DELIMITER.join(str(part).upper() for part in loc)


def _describe(exc: ValidationError, layers: list[Layer]) -> str:
    """The first error as one line: key, value, origin, and what is expected."""
    errors = exc.errors()
    err = errors[0]
    raw = tuple(err["loc"])
    # A union's branches each report an error (loc ending in "str", "int"):
    # name and count the setting, not the branch.
    loc = raw if err["type"] == "extra_forbidden" else _setting_path(raw)
    settings = {raw if e["type"] == "extra_forbidden" else _setting_path(tuple(e["loc"]))
                for e in errors}
    more = f" (and {len(settings) - 1} more)" if len(settings) > 1 else ""
    key = ".".join(str(part) for part in loc)
    origin = next((o for layer in reversed(layers) if (o := layer.origin(loc))), "unknown")
    if err["type"] == "extra_forbidden":
        valid = _field_names(loc[:-1])
        return (f"config: unknown setting {key} ({origin})"
                + _did_you_mean(str(loc[-1]), valid, lambda s: ".".join([*map(str, loc[:-1]), s]))
                + more)
    if err["type"] == "missing":
        if any(isinstance(part, int) for part in loc):  # an item of a list (webhooks)
            item = next((o for layer in reversed(layers) if (o := layer.origin(loc[:-1]))),
                        "unknown")
            return f"config: {key} is not set ({item}): each item needs it{more}"
        return f"config: {key} is not set; {DEFAULT_CONFIG_PATH} must set every key{more}"
    expected = _expected(loc) or err["msg"]
    detail = ""
    if err["type"] == "value_error":
        detail = f" ({err['ctx']['error']})" if err.get("ctx") else ""
    value = repr(err["input"])
    if len(value) > 80:
        value = value[:77] + "..."
    return f"config: {key} = {value} ({origin}): expected {expected}{detail}{more}"


def _setting_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``loc`` up to the setting it names (list indexes kept, union branches cut)."""
    model: Any = Settings
    path: list[Any] = []
    for part in loc:
        if isinstance(part, int):
            path.append(part)
            model = _list_item(model)
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            break
        path.append(part)
        model = fields[part].annotation
    return tuple(path)


def _list_item(annotation: Any) -> Any:
    """The item type of a (possibly Annotated) list type, e.g. a webhook's model."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    args = typing.get_args(annotation)
    return args[0] if typing.get_origin(annotation) is list and args else None


def _did_you_mean(name: str, valid: Any, spell: Any) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f"; did you mean {spell(close[0])}?" if close else f"; valid: {', '.join(valid)}"


def _field_names(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Settings
    for part in loc:
        model = _list_item(model) if isinstance(part, int) else model.model_fields[part].annotation
    return list(model.model_fields)


def _expected(loc: tuple[Any, ...]) -> str | None:
    """The description of the field at ``loc`` (list indexes skipped)."""
    model: Any = Settings
    description = None
    for part in loc:
        if isinstance(part, int):
            model = _list_item(model)
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            break
        field = fields[part]
        description = field.description
        model = field.annotation
    return description


def _absolute_sqlite_url(url: str, layers: list[Layer]) -> str:
    """A relative sqlite path, made absolute against the folder of the layer that
    set it: config.yaml's own folder for the default, so ``make run`` finds the
    same database from any working directory."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or os.path.isabs(url[len(prefix):]):
        return url
    setter = next(layer for layer in reversed(layers) if layer.origin(("storage", "url")))
    return prefix + os.path.normpath(os.path.join(setter.folder, url[len(prefix):]))
