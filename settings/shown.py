"""Settings as people may see them: ``check-config``'s listing and the start-up
line, with secrets and passwords in URLs replaced by ``***``."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import yaml

# Names of settings whose values must not be printed (webhook secrets, keys,
# passwords, tokens), whatever section they are added to.
SECRET_NAME = re.compile(r"(secret|password|token|(^|_)keys?$)", re.IGNORECASE)


def describe_storage(url: str) -> str:
    """The storage for the start-up line: the database file, or the redacted URL."""
    if url.startswith("sqlite:///"):
        return f"database {url[len('sqlite:///') :]}"
    return f"database {redact_url(url)}"


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    """A copy fit to print: secrets as ``***``, passwords removed from URLs."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out[key] = redacted(value)
        elif isinstance(value, list) and any(isinstance(item, dict) for item in value):
            out[key] = [
                redacted(item) if isinstance(item, dict) else item for item in value
            ]  # webhooks: a list of mappings with secrets
        elif SECRET_NAME.search(key) and value not in (None, "", []):
            out[key] = "***"
        elif isinstance(value, str) and "://" in value:
            out[key] = redact_url(value)
        else:
            out[key] = value
    return out


def dump_config(config: dict[str, Any]) -> str:
    """The effective settings as YAML, redacted (``server.py check-config``)."""
    return yaml.safe_dump(redacted(config), sort_keys=False, default_flow_style=False)
