"""Project calls the push needs beyond :class:`LabelStudioClient`'s: the labelling
configuration's choices, updating it, local-files storages and S3 storages.

Functions over a client (the client's module is at its size limit). Only ``_core``.

An S3 source storage is what lets Label Studio show ``s3://bucket/key`` images: it
answers ``/tasks/<id>/resolve/?fileuri=<base64 of the URI>`` with a 303 to a URL it
presigns with the storage's credentials. On 1.23.2 it picks the first S3 storage of
the project whose *bucket* matches the URI (the prefix is not compared), creating one
checks it can list ``prefix`` (a bucket it cannot find, or a prefix holding no
object, answers 500; an endpoint on loopback or a private network answers 403 unless
the server runs with ``USE_DEFAULT_BANNED_SUBNETS=false``), and its answers never
include the credentials.
"""

from __future__ import annotations

import re
from html import unescape
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, StrictInt, field_validator, model_validator

from modzy_retrain._core.exceptions import (
    ConfigurationError,
    LabelStudioError,
    LabelStudioResponseError,
    LabelStudioStatusError,
)
from modzy_retrain._core.options import FrozenOptions
from modzy_retrain._core.secrets import redact, redact_obj

from .client import LabelStudioClient
from .models import LabelStudioProject, LabelStudioS3Storage

_CHOICES = re.compile(r"<Choices\b([^>]*)>(.*?)</Choices>", re.S)
_NAME = re.compile(r'\bname\s*=\s*"([^"]*)"')
_TO_NAME = re.compile(r'\btoName\s*=\s*"([^"]*)"')
_CHOICE = re.compile(r'<Choice\b[^>]*\bvalue\s*=\s*"([^"]*)"')


def config_choices(config: str, control: str) -> tuple[str, str, list[str]] | None:
    """``(control, toName, choices)`` of the Choices control named ``control`` in a
    labelling configuration, or ``None`` when it has none.

    A pattern, not an XML parser: the configuration is the server's text, and only
    these attributes are read from it (quotes escaped as entities, as we write them).
    """
    for match in _CHOICES.finditer(config):
        name = _NAME.search(match.group(1))
        if name is None or unescape(name.group(1)) != control:
            continue
        to_name = _TO_NAME.search(match.group(1))
        values = [unescape(v) for v in _CHOICE.findall(match.group(2))]
        return control, unescape(to_name.group(1)) if to_name else "", values
    return None


def update_label_config(
    client: LabelStudioClient, project_id: int, label_config: str
) -> LabelStudioProject:
    """Replace a project's labelling configuration (Label Studio refuses a change
    that removes labels its annotations use)."""
    if not isinstance(label_config, str) or not label_config.strip().startswith("<View"):
        raise ConfigurationError("update_label_config: label_config must be <View>...</View>")
    path = f"/api/projects/{int(project_id)}"
    value = client._call("PATCH", path, body={"label_config": label_config}, idempotent=True)
    return client._parse(LabelStudioProject, value, "PATCH", path)


def local_storage_paths(client: LabelStudioClient, project_id: int) -> list[str]:
    """The folders of a project's local-files source storages."""
    path = "/api/storages/localfiles"
    value = client._call("GET", path, params={"project": int(project_id)})
    if not isinstance(value, list):
        raise LabelStudioResponseError(f"GET {path}: expected a JSON list", method="GET", path=path)
    return [str(s["path"]) for s in value if isinstance(s, dict) and isinstance(s.get("path"), str)]


def create_local_storage(
    client: LabelStudioClient, project_id: int, folder: str, *, title: str
) -> dict[str, Any]:
    """Connect a local-files source storage on ``folder`` (an absolute path under the
    server's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``), so the server serves the
    files under it to the project's annotators. It is never synced: tasks come from
    the push, not from listing the folder."""
    path = "/api/storages/localfiles"
    body = {"project": int(project_id), "path": folder, "title": title, "use_blob_urls": False}
    value = client._call("POST", path, body=body, idempotent=False)
    if not isinstance(value, dict):
        raise LabelStudioResponseError(
            f"POST {path}: expected a JSON object", method="POST", path=path
        )
    return value


# -- S3 source storages ------------------------------------------------------------------

_REGION = re.compile(r"[A-Za-z0-9_-]{1,64}")
# SigV4 presigned URLs live at most 7 days.
MAX_PRESIGN_TTL_MINUTES = 7 * 24 * 60


class S3StorageSettings(FrozenOptions):
    """How Label Studio reaches a dataset's bucket: the S3 source storage the push
    connects to a project whose images are ``s3://`` URLs of the dataset's copy.

    The credentials are Label Studio's to use, not the library's: they are sent once,
    when the storage is created, and never shown (masked in ``repr`` and ``str``,
    redacted out of any exception, never written to the ledger). Left out, Label
    Studio uses its own environment (``AWS_ACCESS_KEY_ID``... on its server). The
    access key id is masked too, though S3 puts it in every presigned URL.

    Attributes:
        endpoint_url: The S3 endpoint *as the Label Studio server reaches it*
            (``http(s)://host[:port]``), for an S3-compatible store; ``None`` for AWS.
        region_name: The bucket's region (Label Studio's default is ``us-east-1``).
        access_key_id, secret_access_key: A key pair (both or neither).
        session_token: A temporary credential's token (with a key pair only).
        presign_ttl: Minutes a presigned URL stays valid (Label Studio's default is 1;
            each time an annotator opens a task it presigns again).
        title: The storage's title in the project's settings.
    """

    endpoint_url: str | None = None
    region_name: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    presign_ttl: Annotated[StrictInt, Field(ge=1, le=MAX_PRESIGN_TTL_MINUTES)] = 1
    title: Annotated[str, Field(min_length=1, max_length=256)] = "modzy-retrain dataset"

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url.strip())
        # The value is never repeated: a URL may carry credentials.
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s)://host[:port] URL")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("must not hold credentials, a query or a fragment")
        return url.strip().rstrip("/")

    @field_validator("region_name")
    @classmethod
    def _region(cls, region: str | None) -> str | None:
        if region is not None and not _REGION.fullmatch(region):
            raise ValueError("must be a region name (letters, digits, - and _)")
        return region

    @field_validator("access_key_id", "secret_access_key", "session_token")
    @classmethod
    def _credential(cls, value: SecretStr | None) -> SecretStr | None:
        plain = value.get_secret_value() if value is not None else None
        if plain is not None and (not plain or any(c.isspace() for c in plain)):
            raise ValueError("must be a non-empty string without whitespace")
        return value

    @model_validator(mode="after")
    def _pairs(self) -> S3StorageSettings:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key go together (or neither)")
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        return self

    def secret_values(self) -> tuple[str, ...]:
        """The credentials as plain strings: only to redact them out of a text."""
        held = (self.access_key_id, self.secret_access_key, self.session_token)
        return tuple(s.get_secret_value() for s in held if s is not None)

    def storage_body(self, project_id: int, bucket: str, prefix: str) -> dict[str, Any]:
        """The body of ``POST /api/storages/s3`` (credentials included: send it, never
        show it)."""
        body: dict[str, Any] = {
            "project": int(project_id),
            "title": self.title,
            "description": "modzy-retrain: serves the dataset's images to annotators; "
            "tasks come from the push, do not sync",
            "bucket": bucket,
            "prefix": prefix,
            "presign": True,
            "presign_ttl": self.presign_ttl,
            "use_blob_urls": False,
            "recursive_scan": False,
        }
        optional = {
            "s3_endpoint": self.endpoint_url,
            "region_name": self.region_name,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_session_token": self.session_token,
        }
        for name, value in optional.items():
            if value is not None:
                body[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return body


def storage_covers(storage: LabelStudioS3Storage, bucket: str, prefix: str) -> bool:
    """Whether ``storage`` is on ``bucket`` and its prefix holds the folder ``prefix``
    (an empty prefix holds the whole bucket)."""
    if storage.bucket != bucket:
        return False
    base = (storage.prefix or "").strip("/")
    folder = prefix.strip("/")
    return not base or folder == base or folder.startswith(base + "/")


def s3_storages(client: LabelStudioClient, project_id: int) -> list[LabelStudioS3Storage]:
    """A project's S3 source storages, oldest first (without their credentials)."""
    path = "/api/storages/s3"
    value = client._call("GET", path, params={"project": int(project_id)})
    found = client._parse_list(LabelStudioS3Storage, value, "GET", path)
    return sorted(found, key=lambda s: s.id)


def _storage_error(
    exc: LabelStudioError, secrets: tuple[str, ...], bucket: str, prefix: str
) -> LabelStudioError:
    """A failed storage creation as an error that says why, the credentials redacted
    out of its message and body."""
    method, path, status = exc.method, exc.path, exc.status_code
    if not isinstance(exc, LabelStudioStatusError):
        return type(exc)(redact(str(exc), secrets), method=method, path=path, status_code=status)
    body = redact_obj(exc.body, secrets)
    detail = body.get("detail") if isinstance(body, dict) else None
    kind: type[LabelStudioStatusError] = type(exc)
    if isinstance(detail, str) and "reserved network address" in detail:
        # Its SSRF guard answers 403: the endpoint was refused, not the token.
        kind = LabelStudioStatusError
        message = (
            f"{method} {path} answered {status}: {detail} (Label Studio refuses an S3 "
            "endpoint on a private or loopback network unless its server runs with "
            "USE_DEFAULT_BANNED_SUBNETS=false)"
        )
    else:
        message = str(exc) + (
            f" (Label Studio could not list s3://{bucket}/{prefix} with the storage's "
            "settings: can the server reach the endpoint, are the credentials right, "
            "does the prefix hold an object?)"
        )
    return kind(
        redact(message, secrets),
        method=method,
        path=path,
        status_code=status,
        body=body,
        retry_after=exc.retry_after,
    )


def create_s3_storage(
    client: LabelStudioClient,
    project_id: int,
    *,
    bucket: str,
    prefix: str,
    settings: S3StorageSettings,
) -> LabelStudioS3Storage:
    """Connect an S3 source storage on ``s3://bucket/prefix`` to a project, so the
    server presigns the project's ``s3://bucket/...`` images for its annotators.

    It is never synced: tasks come from the push, not from listing the bucket. Label
    Studio checks the storage when it is created (it lists ``prefix``), so the bucket
    must hold an object under ``prefix`` and the endpoint must be reachable from the
    server.
    """
    if not isinstance(settings, S3StorageSettings):
        raise ConfigurationError("create_s3_storage: settings must be an S3StorageSettings")
    if not isinstance(bucket, str) or not bucket or "/" in bucket:
        raise ConfigurationError("create_s3_storage: bucket must be a bucket name")
    if not isinstance(prefix, str) or prefix.startswith("/"):
        raise ConfigurationError("create_s3_storage: prefix must be a key prefix (no leading /)")
    path = "/api/storages/s3"
    body = settings.storage_body(project_id, bucket, prefix.rstrip("/"))
    value: Any = None
    failure: LabelStudioError | None = None
    try:
        value = client._call("POST", path, body=body, idempotent=False)
    except LabelStudioError as exc:
        failure = _storage_error(exc, settings.secret_values(), bucket, body["prefix"])
    if failure is not None:
        # Raised outside the handler: the unredacted error is not even its context.
        raise failure
    return client._parse(LabelStudioS3Storage, value, "POST", path)
