"""A settings validation error as one line: key, value, origin, what is expected."""

from __future__ import annotations

import typing
from typing import Annotated, Any

from pydantic import ValidationError

from settings.layers import DEFAULT_CONFIG_PATH, Layer, did_you_mean
from settings.schema import Settings


def describe_error(exc: ValidationError, layers: list[Layer]) -> str:
    """The first error as one line: key, value, origin, and what is expected."""
    errors = exc.errors()
    err = errors[0]
    raw = tuple(err["loc"])
    # A union's branches each report an error (loc ending in "str", "int"):
    # name and count the setting, not the branch.
    loc = raw if err["type"] == "extra_forbidden" else _setting_path(raw)
    settings = {
        raw if e["type"] == "extra_forbidden" else _setting_path(tuple(e["loc"])) for e in errors
    }
    more = f" (and {len(settings) - 1} more)" if len(settings) > 1 else ""
    key = ".".join(str(part) for part in loc)
    origin = next((o for layer in reversed(layers) if (o := layer.origin(loc))), "unknown")
    if err["type"] == "extra_forbidden":
        valid = _field_names(loc[:-1])
        return (
            f"config: unknown setting {key} ({origin})"
            + did_you_mean(str(loc[-1]), valid, lambda s: ".".join([*map(str, loc[:-1]), s]))
            + more
        )
    if err["type"] == "missing":
        if any(isinstance(part, int) for part in loc):  # an item of a list (webhooks)
            item = next(
                (o for layer in reversed(layers) if (o := layer.origin(loc[:-1]))), "unknown"
            )
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
