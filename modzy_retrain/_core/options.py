"""Frozen, validated option models: a stage's or client's settings checked once, when built.

``RetryPolicy`` and the writer's options are such models. Pydantic checks the fields;
what it refuses surfaces as :class:`ConfigurationError` (the one family for invalid
arguments), naming the field and the rule, never the value given, which may be a
credential (storage options).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .exceptions import ConfigurationError


def describe_validation_error(owner: str, exc: ValidationError) -> str:
    """``owner: field: rule; field: rule`` from a pydantic error, without input values."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"]) or "value"
        ctx = error.get("ctx") or {}
        # A validator's own message (ctx["error"]) says more than pydantic's wrapper.
        message = str(ctx["error"]) if "error" in ctx else error["msg"]
        parts.append(f"{where}: {message}")
    return f"{owner}: " + "; ".join(parts)


class FrozenOptions(BaseModel):
    """Base of the option models: immutable, no unknown fields, ConfigurationError on
    anything invalid (also a ``ValueError``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigurationError(self._describe_errors(exc)) from None

    @classmethod
    def _describe_errors(cls, exc: ValidationError) -> str:
        """The message of the ConfigurationError; a subclass may word it for its owner."""
        return describe_validation_error(cls.__name__, exc)
