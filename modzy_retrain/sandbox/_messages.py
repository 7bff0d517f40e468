"""Requests and responses as the sandbox's transports exchange them, and its JSON answers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from ._views import error_body

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Request:
    """One HTTP request, as the transports hand it to :meth:`SandboxApp.handle`.

    ``target`` is the raw request-target (percent-encoded path plus optional query);
    ``headers`` has lower-case names.
    """

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    """One HTTP response, as the sandbox's handlers produce it.

    Attributes:
        status: The HTTP status.
        headers: The headers, as (name, value) pairs in order.
        body: The body's bytes (Modzy's JSON, or a raw input's content).
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def reason(self) -> str:
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Unknown"

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


class HttpError(Exception):
    """Raised by a handler: answered as Modzy's JSON error body with this status."""

    def __init__(self, status: int, message: str, headers: Headers = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def dump_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(status: int, value: Any, headers: Headers = ()) -> Response:
    return raw_json_response(status, dump_json(value), headers)


def raw_json_response(status: int, body: bytes, headers: Headers = ()) -> Response:
    return Response(status, (("Content-Type", "application/json"), *headers), body)


def error_response(status: int, message: str, headers: Headers = ()) -> Response:
    phrase = HTTPStatus(status).phrase
    return json_response(status, error_body(status, phrase, message), headers)
