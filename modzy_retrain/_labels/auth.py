"""Label Studio's two kinds of token, told apart by their shape, as an ``httpx.Auth``.

- A **legacy token** (40 hex characters on Label Studio 1.23) is sent as
  ``Authorization: Token <key>``.
- A **personal access token** is a JWT *refresh* token (three base64url parts, the
  payload saying ``"token_type": "refresh"``). It cannot authenticate a request itself
  (``Token <PAT>`` answers 401): it is exchanged at ``POST /api/token/refresh/`` for a
  short-lived access token (5 minutes on 1.23.2), sent as ``Authorization: Bearer``.
  When a request answers 401, the access token is refreshed once and the request sent
  again; a 401 after that is the caller's.
- A JWT whose payload says ``"token_type": "access"`` is sent as a bearer token as is
  (it cannot be refreshed).

Anything that is not a JWT is taken for a legacy token. The key and the access token
never appear in a repr, a message or a log line; :meth:`TokenAuth.secrets` lists what
to redact.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Generator
from typing import Literal

import httpx

from modzy_retrain._core.exceptions import LabelStudioAuthError, LabelStudioResponseError

TokenKind = Literal["legacy", "personal", "access"]
REFRESH_PATH = "/api/token/refresh/"


def _jwt_payload(token: str) -> dict[str, object] | None:
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or "alg" not in header or not isinstance(payload, dict):
        return None
    return payload


def token_kind(token: str) -> TokenKind:
    """Which kind of token this is, from its shape alone (no request)."""
    payload = _jwt_payload(token)
    if payload is None:
        return "legacy"
    return "access" if payload.get("token_type") == "access" else "personal"


class TokenAuth(httpx.Auth):
    """Authenticates every request; for a personal access token, keeps an access token."""

    requires_response_body = True

    def __init__(self, token: str, refresh_url: str) -> None:
        self._token = token
        self.kind: TokenKind = token_kind(token)
        self._refresh_url = refresh_url
        self._access: str | None = token if self.kind == "access" else None
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"TokenAuth(kind={self.kind!r}, token='****')"

    def secrets(self) -> tuple[str, ...]:
        """The strings that must never be shown: the key, its JWT signature, the access token."""
        out = [self._token]
        if self.kind != "legacy":
            out.append(self._token.rsplit(".", 1)[1])
        if self._access:
            out += [self._access, self._access.rsplit(".", 1)[1]]
        return tuple(s for s in out if len(s) >= 8)

    def _sign(self, request: httpx.Request) -> None:
        if self.kind == "legacy":
            request.headers["Authorization"] = f"Token {self._token}"
        else:
            request.headers["Authorization"] = f"Bearer {self._access}"

    def _refresh_request(self) -> httpx.Request:
        return httpx.Request("POST", self._refresh_url, json={"refresh": self._token})

    def _take_access(self, response: httpx.Response) -> None:
        if response.status_code in (401, 403):
            raise LabelStudioAuthError(
                f"the personal access token was refused by POST {REFRESH_PATH} "
                f"({response.status_code}): revoked, expired, or from another server",
                method="POST",
                path=REFRESH_PATH,
                status_code=response.status_code,
            )
        if response.status_code != 200:
            # Anything else (5xx, 429) goes back to the client's retry loop as is.
            raise RefreshFailed(response.status_code, response.headers.get("Retry-After"))
        try:
            access = response.json()["access"]
        except (ValueError, KeyError, TypeError):
            access = None
        if not isinstance(access, str) or not access:
            raise LabelStudioResponseError(
                f"POST {REFRESH_PATH} answered 200 without an access token",
                method="POST",
                path=REFRESH_PATH,
                status_code=200,
            )
        self._access = access
        self.refreshes += 1

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.kind == "personal" and self._access is None:
            self._take_access((yield self._refresh_request()))
        self._sign(request)
        response = yield request
        if response.status_code == 401 and self.kind == "personal":
            # The access token expired (or the server restarted): refresh once, resend.
            self._take_access((yield self._refresh_request()))
            self._sign(request)
            yield request


class RefreshFailed(Exception):
    """The refresh route answered an error status other than 401/403 (mapped by the client)."""

    def __init__(self, status_code: int, retry_after: str | None) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.retry_after = retry_after
