"""``load_config``: the layers merged and validated, as the dict the server reads.

The merged result is validated once against ``Settings``; the first problem
becomes a ``ConfigError`` whose message is one line naming the key, the value,
where it came from and what is expected. The rest of the server reads settings
as a plain nested dict (``config["server"]["port"]``): ``load_config`` returns
the validated model's ``model_dump()``, so only this package knows about pydantic.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from settings.describe import describe_error
from settings.layers import DEFAULT_CONFIG_PATH, ConfigError, Layer, env_layer, file_layer, merge
from settings.schema import Settings


def load_config(
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The validated settings as a nested dict; raises ``ConfigError``.

    Runs once at start-up (and per CLI command): ``path`` is ``--config``,
    ``environ`` defaults to ``os.environ``, ``overrides`` are the flags.
    """
    environ = os.environ if environ is None else environ
    layers = [file_layer(DEFAULT_CONFIG_PATH)]
    path = path or environ.get("CHAT_CONFIG")
    if path:
        layers.append(file_layer(path))
    layers.append(env_layer(environ))
    layers.append(Layer("on the command line", os.getcwd(), copy.deepcopy(overrides or {})))
    merged: dict[str, Any] = {}
    for layer in layers:
        merge(merged, layer.data)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc, layers)) from None
    config = settings.model_dump()
    config["storage"]["url"] = _absolute_sqlite_url(config["storage"]["url"], layers)
    return config


def _absolute_sqlite_url(url: str, layers: list[Layer]) -> str:
    """A relative sqlite path, made absolute against the folder of the layer that
    set it: config.yaml's own folder for the default, so ``make run`` finds the
    same database from any working directory."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or os.path.isabs(url[len(prefix) :]):
        return url
    setter = next(layer for layer in reversed(layers) if layer.origin(("storage", "url")))
    return prefix + os.path.normpath(os.path.join(setter.folder, url[len(prefix) :]))
