"""The API key as a value that cannot leak by accident.

Modzy keys look like ``<prefix>.<body>``. The prefix is public (it shows up in job
objects as ``submittedBy`` and is what the history's ``accessKey`` filter takes); the
body is the secret. ``ApiKey`` keeps both, but its ``repr``/``str`` show only the
prefix, and :func:`redact` scrubs the full key and the body out of any text we are
about to put in an exception or a log line (for instance an error body the server
echoed back).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_MASK = "****"


class ApiKey:
    """A Modzy API key. Strictly private: users pass plain strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not value:
            raise ValueError("empty API key")
        self._value = value

    @property
    def prefix(self) -> str:
        """The public key id (the part before the dot)."""
        return self._value.split(".", 1)[0]

    def header_value(self) -> str:
        return f"ApiKey {self._value}"

    def secret_parts(self) -> tuple[str, ...]:
        """The strings that must never be shown: the full key and its secret body."""
        parts = [self._value]
        if "." in self._value:
            body = self._value.split(".", 1)[1]
            # A very short body would redact innocent text; the full key still covers it.
            if len(body) >= 6:
                parts.append(body)
        return tuple(parts)

    def __repr__(self) -> str:
        return f"ApiKey('{self.redacted()}')"

    __str__ = __repr__

    def redacted(self) -> str:
        if "." in self._value:
            return f"{self.prefix}.{_MASK}"
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ApiKey, (self._value,))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in ``text`` with a mask."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, _MASK)
    return text


def redact_obj(value: object, secrets: tuple[str, ...]) -> object:
    """Redact secrets inside a decoded JSON value (dicts, lists and strings)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact(str(k), secrets): redact_obj(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_obj(v, secrets) for v in value]
    return value
