"""The settings schema: every key of ``config.yaml``, its type and range.

One pydantic model per section of ``config.yaml``; the defaults live in
``config.yaml`` itself, so every key must be set there. Each value type carries
a description, which is the "expected ..." of the one-line error a bad value
gets (``settings/describe.py``). Loading and merging the layers is
``settings/layers.py`` and ``settings/load.py``.
"""

from __future__ import annotations

import ipaddress
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.workflow import WEBHOOK_EVENTS

ENV_PREFIX = "CHAT_"
ENV_DELIMITER = "__"
LogLevelName = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[str, ...] = typing.get_args(LogLevelName)


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
        if not url[len("sqlite:///") :]:
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
SecondsOrOff = Annotated[
    float, NoBool, Field(ge=0, description="a number of seconds >= 0 (0 = off)")
]
Rate = Annotated[float, NoBool, Field(ge=0, description="a number >= 0 (0 = off)")]
Text = Annotated[str, Field(description="a string")]
NonEmptyText = Annotated[str, Field(min_length=1, description="a non-empty string")]
StringList = Annotated[list[str], Field(description="a list of strings")]
NetworkList = Annotated[
    list[Annotated[str, AfterValidator(_check_network)]],
    Field(description="a list of IP addresses or CIDR networks, e.g. [10.0.0.0/8]"),
]
StorageUrl = Annotated[
    str,
    AfterValidator(_check_storage_url),
    Field(description="sqlite:///PATH or mongodb://HOST[:PORT]/DB"),
]
Bind = Annotated[
    str,
    AfterValidator(_check_bind),
    Field(description='"" or HOST:PORT with a port from 1 to 65535'),
]
Synchronous = Annotated[
    Literal["OFF", "NORMAL", "FULL", "EXTRA"],
    BeforeValidator(_upper),
    Field(description="one of OFF, NORMAL, FULL, EXTRA"),
]
PageSize = Annotated[
    int,
    NoBool,
    AfterValidator(_check_page_size),
    Field(description="a power of two from 512 to 65536"),
]
LogLevel = Annotated[
    LogLevelName,
    BeforeValidator(_upper),
    Field(description="one of " + ", ".join(LOG_LEVELS)),
]
LogFormat = Annotated[
    Literal["text", "json"], BeforeValidator(_lower), Field(description="text or json")
]
WriteConcern = Annotated[
    NonEmptyText | Count, Field(description='"majority", a tag set name or a number of nodes >= 0')
]
Flag = Annotated[bool, Field(description="true or false")]


# --- the schema: one class per section of config.yaml; defaults live in config.yaml ---
class Section(BaseModel):
    """A section of config.yaml: a mapping whose unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    """``server:``: where and how the server listens, and its limits per request."""

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
    """``storage:``: the database URL and each backend's durability settings."""

    url: StorageUrl
    sqlite_synchronous: Synchronous
    sqlite_page_size: PageSize
    mongo_write_concern: WriteConcern
    mongo_retry_writes: Flag
    mongo_timeout_ms: PositiveInt


class ChatLimits(Section):
    """``chat:``: sessions per admin, and when a claimed session goes back to the queue."""

    max_sessions_per_admin: Count
    requeue_offline_secs: SecondsOrOff
    requeue_unanswered_secs: SecondsOrOff
    requeue_sweep_secs: Seconds


class ActorSettings(Section):
    """``actors:``: mailbox size, passivation and restart limits of the session actors."""

    mailbox_size: PositiveInt
    idle_timeout_secs: Seconds
    max_restarts: Count
    restart_window_secs: Seconds


class WebSocketSettings(Section):
    """``websocket:``: pings, frame size, the auth deadline and the send buffer."""

    ping_interval_secs: SecondsOrOff
    ping_timeout_secs: SecondsOrOff
    max_message_bytes: PositiveInt
    auth_timeout_secs: Seconds
    max_buffered_bytes: PositiveInt


class EventSettings(Section):
    """``events:``: how often the change feed is polled, and this node's name."""

    poll_interval_secs: Seconds
    node: Text


class RateLimits(Section):
    """``limits:``: the request rate per key (a token bucket)."""

    rate_per_sec: Rate
    burst: PositiveInt


class OpsSettings(Section):
    """``ops:``: a separate address for /metrics and /healthz (empty: the API's)."""

    bind: Bind


class LoggingSettings(Section):
    """``logging:``: level and format (text or JSON lines)."""

    level: LogLevel
    format: LogFormat


class PresenceSettings(Section):
    """``presence:``: admin heartbeats, and when a silent admin counts as away."""

    heartbeat_secs: Seconds
    expiry_secs: Seconds

    @model_validator(mode="after")
    def _expiry_outlasts_heartbeats(self) -> PresenceSettings:
        if self.expiry_secs <= self.heartbeat_secs:
            raise ValueError("expiry_secs must be longer than heartbeat_secs")
        return self


def _check_webhook_url(url: str) -> str:
    if not url.startswith(("http://", "https://")) or len(url) < len("http://x"):
        raise ValueError(f"the scheme of {url[:40]!r} is not http or https")
    return url


WebhookUrl = Annotated[
    str, AfterValidator(_check_webhook_url), Field(description="an http:// or https:// URL")
]
WebhookEvents = Annotated[
    # A Literal of storage's tuple, made at run time: pydantic reads it, mypy cannot.
    list[Literal[WEBHOOK_EVENTS]],  # type: ignore[valid-type]
    Field(min_length=1, description="a non-empty list of " + ", ".join(WEBHOOK_EVENTS)),
]


class WebhookSpec(Section):
    """One item of ``webhooks:``: where to POST, which events, the signing secret."""

    url: WebhookUrl
    events: WebhookEvents
    secret: NonEmptyText


class WebhookDelivery(Section):
    """``webhook_delivery:``: timeouts, retries and the outbox lease."""

    timeout_secs: Seconds
    max_retry_secs: Seconds
    backoff_initial_secs: Seconds
    backoff_max_secs: Seconds
    lease_secs: Seconds
    poll_secs: Seconds


def _section(name: str) -> Any:
    # The description is the "expected ..." of an error on the section itself.
    return Field(description=f"a mapping of the {name} settings")


class Settings(BaseSettings):
    """Every setting of the server. Built by ``load_config``, never from os.environ
    directly (the environment is one of the layers it merges)."""

    model_config = SettingsConfigDict(
        extra="forbid", env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER
    )

    server: Annotated[ServerSettings, _section("server")]
    storage: Annotated[StorageSettings, _section("storage")]
    chat: Annotated[ChatLimits, _section("chat")]
    actors: Annotated[ActorSettings, _section("actors")]
    websocket: Annotated[WebSocketSettings, _section("websocket")]
    events: Annotated[EventSettings, _section("events")]
    limits: Annotated[RateLimits, _section("limits")]
    ops: Annotated[OpsSettings, _section("ops")]
    logging: Annotated[LoggingSettings, _section("logging")]
    presence: Annotated[PresenceSettings, _section("presence")]
    webhooks: Annotated[
        list[WebhookSpec], Field(description="a list of {url, events, secret} mappings")
    ]
    webhook_delivery: Annotated[WebhookDelivery, _section("webhook_delivery")]
