"""The API key as a value that cannot leak by accident.

Modzy keys look like ``<prefix>.<body>``. The prefix is public (it shows up in job
objects as ``submittedBy`` and is what the history's ``accessKey`` filter takes); the
body is the secret. ``ApiKey`` keeps both, but its ``repr``/``str`` show only the
prefix, and :func:`redact` scrubs the full key and the body out of any text we are
about to put in an exception or a log line (for instance an error body the server
echoed back). :func:`public_url` and :func:`scrub_urls` take the credentials out of URLs
(user-info, signed queries) before the library writes them anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

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


# -- credentials inside URLs ---------------------------------------------------------
#
# What the library writes (a sample's source_url, the templates in the manifest and the
# report, a drop's detail) goes through :func:`public_url`: the user-info
# (``user:password@``) and every query parameter that carries a credential are removed,
# the rest of the URL is kept as written (a query that names the object, such as S3's
# ``versionId`` or GCS's ``generation``, still finds it). The list is documented in
# docs/reliability.md#secrets.

# Parameters removed by exact name (compared lower-cased, percent-decoded).
CREDENTIAL_PARAMS = frozenset(
    {
        "sig",  # Azure SAS
        "signature",  # S3 and GCS V2 signed URLs, CloudFront, Alibaba OSS
        "awsaccesskeyid",  # S3 V2 presigned URLs
        "googleaccessid",  # GCS V2 signed URLs
        "ossaccesskeyid",  # Alibaba OSS
        "key-pair-id",  # CloudFront signed URLs
        "key",  # Google APIs' API keys
        "code",  # OAuth authorisation codes
        "jwt",
        "auth",
        "authorization",
        "pass",
        "pwd",
        "passwd",
        "session",
        "sessionid",
    }
)
# Parameters removed by prefix: every S3 and GCS V4 signing parameter, Alibaba's too.
CREDENTIAL_PARAM_PREFIXES = ("x-amz-", "x-goog-", "x-oss-")
# Parameters removed when their name holds one of these (``access_token``,
# ``client_secret``, ``X-Signature``, ``apiKey``, ``security-token``...).
CREDENTIAL_PARAM_WORDS = (
    "token",
    "secret",
    "password",
    "signature",
    "credential",
    "apikey",
    "api_key",
    "api-key",
    "accesskey",
    "access_key",
    "access-key",
    "privatekey",
    "private_key",
)
# Schemes whose URLs hold no query: a '?' or '#' there is part of a file's name.
_PLAIN_PATH_SCHEMES = frozenset({"file", "local", "memory"})
# Azure's ``container@account`` names a container: the part before '@' is no credential.
_AZURE_SCHEMES = frozenset({"abfs", "abfss", "az", "adl", "wasb", "wasbs"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# A URL inside a text: a scheme, then anything but white space and quotes. Brackets
# and braces are allowed (templates hold fields such as {input_name}).
_URL_IN_TEXT = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.\-]*::)*[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
# Punctuation that ends a sentence or a parenthesis rather than the URL.
_TRAILING = ").,;:!]"


def is_credential_param(name: str) -> bool:
    """Whether a query parameter of this name carries a credential (see above)."""
    lowered = unquote_plus(name).strip().lower()
    return (
        lowered in CREDENTIAL_PARAMS
        or lowered.startswith(CREDENTIAL_PARAM_PREFIXES)
        or any(word in lowered for word in CREDENTIAL_PARAM_WORDS)
    )


def _public_params(text: str) -> str:
    """A query (or fragment) without its credential parameters, the rest as written."""
    kept = [part for part in text.split("&") if not is_credential_param(part.split("=", 1)[0])]
    return "&".join(kept)


def _public_single(url: str) -> str:
    """One URL (no fsspec chaining) without its credentials."""
    matched = _SCHEME.match(url)
    if matched is None:
        return url  # a local path: '@', '?' and '#' are characters of its names
    scheme = matched.group(1).lower()
    if scheme in _PLAIN_PATH_SCHEMES:
        return url
    rest = url[matched.end() :]
    cut = len(rest)
    for mark in "/?#":
        where = rest.find(mark)
        if where != -1:
            cut = min(cut, where)
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        if scheme in _AZURE_SCHEMES:
            container = userinfo.split(":", 1)[0]
            authority = f"{container}@{host}" if container else host
        else:
            authority = host
    fragment = ""
    if "#" in tail:
        tail, fragment = tail.split("#", 1)
        had = bool(fragment)
        fragment = _public_params(fragment) if "=" in fragment else fragment
        fragment = "#" + fragment if fragment or not had else ""
    if "?" in tail:
        path, query = tail.split("?", 1)
        public = _public_params(query)
        tail = f"{path}?{public}" if public or not query else path
    return f"{url[: matched.end()]}{authority}{tail}{fragment}"


def public_url(url: str | None) -> str | None:
    """``url`` as it may be written anywhere: without user-info (``user:password@``)
    and without the query parameters that carry credentials (signatures, tokens,
    keys: :func:`is_credential_param`); everything else is kept as written.

    Local paths and ``file://``, ``local://`` and ``memory://`` URLs are kept whole:
    '@', '?' and '#' are characters of their file names. fsspec chains
    (``simplecache::https://...``) are cleaned URL by URL.
    """
    if not url:
        return url
    return "::".join(_public_single(part) for part in url.split("::"))


def scrub_urls(text: str) -> str:
    """Every URL inside ``text`` (an error message, a drop's detail) as
    :func:`public_url` gives it."""

    def clean(found: re.Match[str]) -> str:
        url = found.group(0)
        end = len(url)
        while end and url[end - 1] in _TRAILING:
            end -= 1
        return str(public_url(url[:end])) + url[end:]

    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(clean, text)


def scrub_urls_obj(value: object) -> object:
    """:func:`scrub_urls` over a JSON-like value (dicts, lists, tuples and strings)."""
    if isinstance(value, str):
        return scrub_urls(value)
    if isinstance(value, dict):
        return {k: scrub_urls_obj(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_urls_obj(v) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub_urls_obj(v) for v in value)
    return value
