"""Parsing ``KEY=VALUE`` command-line options (``--storage-option``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def parse_key_values(pairs: Iterable[str], *, flag: str = "--storage-option") -> dict[str, Any]:
    """Turn ``["key=value", ...]`` into a dict; values that parse as JSON are decoded.

    So ``anon=true`` gives ``True``, ``client_kwargs={"region_name":"eu-west-1"}`` a dict,
    and ``endpoint_url=http://127.0.0.1:9000`` stays a string.

    Raises:
        ValueError: An item has no ``=`` or an empty key.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            # Never echo the value: it may be a credential.
            raise ValueError(f"{flag} takes KEY=VALUE (got an item without '=' or key)")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key] = value
    return out
