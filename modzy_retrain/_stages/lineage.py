"""``LineageResolver``: map each sample to its raw production input, and check it.

Modzy does not echo where an input came from, so the link is a naming convention:
a format template over the record's fields, optionally with named groups parsed from
the input name by a regular expression, or a callable / subclass for anything else.

Templates are formatted defensively. Every value put into a template must be a safe
relative path: no ``..`` or ``.`` segment, no leading ``/`` or ``~``, no backslash, no
URL scheme, no NUL or control character, also after percent-decoding. A value that is
not is rejected with the reason (``unsafe_name``), so an input name can never point a
template outside its root.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
import string
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import aclosing
from typing import Any, Protocol
from urllib.parse import unquote

from modzy_retrain._core.concurrency import aordered_map, ordered_map
from modzy_retrain._core.exceptions import LineageError, UnsafeNameError
from modzy_retrain._core.fs import FileSystems, FileTooLargeError, hash_file
from modzy_retrain._core.secrets import public_url

from .base import Stage
from .records import Sample
from .report import (
    NAME_MISMATCH,
    NO_TEMPLATE,
    SOURCE_MISSING,
    SOURCE_TOO_LARGE,
    SOURCE_UNREADABLE,
    UNSAFE_NAME,
    Drop,
)

DEFAULT_LINEAGE_CONCURRENCY = 16
DEFAULT_KEEP_BYTES = 4 << 20
TEMPLATE_FIELDS = (
    "job_id",
    "input_name",
    "model_id",
    "model_version",
    "model_name",
    "submitted_at",
    "label",
    "predicted_label",
)


class UnresolvedError(ValueError):
    """Strictly private: ``locate`` could not produce a URL (reason code + detail)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


_DRIVE = re.compile(r"^[A-Za-z]:")


def check_safe_value(name: str, value: str) -> None:
    """Refuse a template value that is not a safe relative path.

    Raises:
        UnsafeNameError: With the reason.
    """
    if value == "":
        raise UnsafeNameError(f"{name} is empty")
    for candidate in _readings(value):
        _check_characters(name, candidate)
        if candidate.startswith(("/", "~")):
            raise UnsafeNameError(f"{name} is an absolute or home-relative path")
        # fsspec reads "proto://" and "a::b" (chaining) as protocols, "data:" as inline data.
        if "://" in candidate or "::" in candidate or candidate.startswith("data:"):
            raise UnsafeNameError(f"{name} looks like a URL")
        if _DRIVE.match(candidate):
            raise UnsafeNameError(f"{name} starts with a drive letter")
        segments = candidate.split("/")
        _check_segments(name, segments)


def _readings(value: str) -> tuple[str, ...]:
    """A value as given, percent-decoded, and NFKC-normalised (fullwidth dots and
    slashes become ASCII there, which some layers apply): each is checked."""
    return (value, unquote(value), unicodedata.normalize("NFKC", unquote(value)))


def _check_characters(name: str, candidate: str) -> None:
    for ch in candidate:
        if ch == "\x00":
            raise UnsafeNameError(f"{name} contains a NUL character")
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            raise UnsafeNameError(f"{name} contains a control character U+{ord(ch):04X}")
    if "\\" in candidate:
        raise UnsafeNameError(f"{name} contains a backslash")


def _check_segments(name: str, segments: list[str]) -> None:
    if any(seg in ("..", ".") for seg in segments):
        raise UnsafeNameError(f"{name} has a '.' or '..' path segment")
    if "" in segments:
        raise UnsafeNameError(f"{name} has an empty path segment")


_POINTER_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def check_pointer(value: str, root: str | None = None) -> str:
    """A pointer a lineage table holds (a URL or an absolute path written by the user's
    own system), checked as a template's result is; the URL to read.

    A relative pointer is taken under ``root`` (and checked as a template value);
    without a root it is refused. With a root, the pointer must lie under it.

    Raises:
        UnsafeNameError: With the reason.
    """
    name = "the pointer"
    if value == "":
        raise UnsafeNameError(f"{name} is empty")
    matched = _POINTER_SCHEME.match(value)
    if matched is None and not value.startswith("/"):
        if root is None:
            raise UnsafeNameError(f"{name} is neither a URL nor an absolute path")
        check_safe_value(name, value)
        return root.rstrip("/") + "/" + value
    for candidate in _readings(value):
        _check_characters(name, candidate)
        # fsspec reads "a::b" as chaining, "data:" as inline bytes: neither is a place.
        if "::" in candidate or candidate.lower().startswith("data:"):
            raise UnsafeNameError(f"{name} chains protocols or holds inline data")
        rest = candidate[matched.end() :] if matched else candidate
        _check_segments(name, rest.lstrip("/").split("/"))
    if root is not None and not _under(value, root):
        raise UnsafeNameError(f"{name} is outside the root {public_url(root)}")
    return value


def _under(value: str, root: str) -> bool:
    """Whether ``value`` lies under ``root`` (``file://`` or not, for local paths)."""

    def plain(url: str) -> str:
        return url[len("file://") :] if url.startswith("file://") else url

    prefix = plain(root).rstrip("/") + "/"
    return plain(value).startswith(prefix)


class _SafeFormatter(string.Formatter):
    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, int):
            raise LineageError("lineage templates use named fields only, e.g. {input_name}")
        if key not in kwargs:
            raise UnresolvedError(NO_TEMPLATE, f"template field {{{key}}} has no value")
        return kwargs[key]


def template_root(template: str) -> str:
    """The literal directory part of a template, before its first field."""
    literal = template.split("{", 1)[0]
    return literal.rsplit("/", 1)[0] + "/" if "/" in literal else ""


def validate_template(template: str, extra_fields: Iterable[str] = ()) -> None:
    """Check a template's syntax and field names now, not on the first record.

    Raises:
        LineageError: The template is malformed or names an unknown field.
    """
    allowed = set(TEMPLATE_FIELDS) | set(extra_fields)
    shown = public_url(template)  # what an error may quote: no credentials
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise LineageError(f"malformed template {shown!r}: {exc}") from None
    for _, field, _, conversion in parsed:
        if field is None:
            continue
        base = re.split(r"[.\[]", field, maxsplit=1)[0]
        if field == "" or base.isdigit():
            raise LineageError(f"template {shown!r} uses a positional field")
        if field != base:
            raise LineageError(f"template {shown!r}: attribute or index access ({field})")
        if conversion:
            raise LineageError(f"template {shown!r}: conversions like !r are not allowed")
        if base not in allowed:
            raise LineageError(
                f"template {shown!r} uses unknown field {{{base}}}; known: "
                f"{', '.join(sorted(allowed))}"
            )


def render_template(template: str, fields: Mapping[str, Any]) -> str:
    """Format ``template`` with ``fields``, refusing any value that could escape its root.

    Raises:
        UnsafeNameError: A value (or the result) would escape the template's root.
    """
    formatter = _SafeFormatter()
    rendered_parts = []
    for literal, field, spec, _ in formatter.parse(template):
        rendered_parts.append(literal)
        if field is None:
            continue
        value = formatter.get_value(field, (), fields)
        text = formatter.format_field(value, spec or "")
        check_safe_value(field, text)
        rendered_parts.append(text)
    url = "".join(rendered_parts)
    root = template_root(template)
    rest = url[len(root) :]
    if not url.startswith(root) or posixpath.normpath("/" + rest) != "/" + rest.rstrip("/"):
        raise UnsafeNameError("the rendered path leaves the template's root")
    return url


Locator = Callable[[Sample], "str | None"]


def sample_fields(sample: Sample) -> dict[str, Any]:
    """The record's values a template (or a lineage query) can use for this sample."""
    r = sample.record
    fields: dict[str, Any] = {
        "job_id": r.job_id,
        "input_name": r.input_name,
        "model_id": r.model_id,
        "model_version": r.model_version,
    }
    if r.model_name:
        fields["model_name"] = r.model_name
    if r.submitted_at is not None:
        fields["submitted_at"] = r.submitted_at
    if sample.label is not None:
        fields["label"] = sample.label
    if r.predicted_label is not None:
        fields["predicted_label"] = r.predicted_label
    return fields


def pattern_fields(pattern: re.Pattern[str] | None, sample: Sample) -> dict[str, str]:
    """The named groups ``pattern`` parses from the input name (none without a pattern).

    Raises:
        UnresolvedError: The name does not match (``name_pattern_mismatch``).
    """
    if pattern is None:
        return {}
    match = pattern.fullmatch(sample.input_name)
    if match is None:
        raise UnresolvedError(NAME_MISMATCH, f"input name does not match {pattern.pattern!r}")
    return {k: v for k, v in match.groupdict().items() if v is not None}


class _Reader(Protocol):
    """What reading a source needs of its stage: its name and its limits."""

    name: str
    keep_bytes_up_to: int
    max_bytes: int | None

    def _drop(self, sample: Sample, reason: str, detail: str) -> Drop: ...


def read_source(
    stage: _Reader, sample: Sample, url: str, filesystems: FileSystems
) -> Sample | Drop:
    """Check, size and hash the file at ``url`` (a worker thread): the sample, or a drop."""
    try:
        fs, path = filesystems.resolve(url)
        digest, size, payload = hash_file(
            fs, path, keep_up_to=stage.keep_bytes_up_to, max_bytes=stage.max_bytes
        )
    except FileNotFoundError:
        return stage._drop(sample, SOURCE_MISSING, f"no file at {url}")
    except IsADirectoryError:
        return stage._drop(sample, SOURCE_UNREADABLE, f"{url} is a directory")
    except FileTooLargeError as exc:
        return stage._drop(sample, SOURCE_TOO_LARGE, f"{url}: {exc}")
    except (OSError, ValueError) as exc:
        # Credentials never reach here: fsspec errors name the path, not the options.
        return stage._drop(sample, SOURCE_UNREADABLE, f"{url}: {type(exc).__name__}: {exc}")
    return sample.with_payload(payload, source_url=url, sha256=digest, size=size)


def check_limits(what: str, concurrency: int, keep_bytes_up_to: int, max_bytes: int | None) -> None:
    """A lineage stage's common arguments, checked when it is built.

    Raises:
        LineageError: Naming the argument.
    """
    for name, value in (("concurrency", concurrency), ("keep_bytes_up_to", keep_bytes_up_to)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LineageError(f"{what}: {name} must be a whole number, not {value!r}")
    if concurrency < 1:
        raise LineageError(f"{what}: concurrency must be at least 1, not {concurrency!r}")
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1
    ):
        raise LineageError(
            f"{what}: max_bytes must be a whole number of at least 1 (or None), not {max_bytes!r}"
        )


class LineageResolver(Stage[Sample, Sample]):
    """Find each sample's raw input, check it exists, and record its size and sha256.

    Give one of:

    - ``template``: a format template over the record's fields (``{job_id}``,
      ``{input_name}``, ``{model_id}``, ``{model_version}``, ``{model_name}``,
      ``{submitted_at:%Y/%m/%d}``, ``{label}``, ``{predicted_label}``) and the named
      groups of ``pattern``;
    - ``templates``: one template per model id (for instance
      ``Sandbox.input_templates``), with ``template`` as the fallback;
    - ``locate``: a callable ``sample -> URL or None``.

    Any fsspec URL works (local paths, ``file://``, ``memory://``, ``s3://``,
    ``gs://``...), with ``storage_options`` for credentials and endpoints.

    Args:
        pattern: A regular expression that must match the whole input name; its named
            groups become template fields (no match: ``name_pattern_mismatch``).
        concurrency: Files checked and hashed at once (default 16).
        keep_bytes_up_to: Files this small (default 4 MiB) keep their bytes on the
            sample, so a writer copying them does not read them twice. 0 disables.
        max_bytes: Refuse inputs larger than this (``source_too_large``).

    Drops (reported, never silent): ``no_template``, ``name_pattern_mismatch``,
    ``unsafe_name``, ``source_missing``, ``source_unreadable``, ``source_too_large``.

    Subclass hook: override :meth:`locate`.
    """

    name = "resolve"

    def __init__(
        self,
        template: str | None = None,
        *,
        templates: Mapping[str, str] | None = None,
        pattern: str | re.Pattern[str] | None = None,
        locate: Locator | None = None,
        storage_options: Mapping[str, Any] | None = None,
        concurrency: int = DEFAULT_LINEAGE_CONCURRENCY,
        keep_bytes_up_to: int = DEFAULT_KEEP_BYTES,
        max_bytes: int | None = None,
    ) -> None:
        check_limits("LineageResolver", concurrency, keep_bytes_up_to, max_bytes)
        if (
            template is None
            and not templates
            and locate is None
            and type(self).locate is LineageResolver.locate
        ):
            # Every sample would be dropped as no_template: a misconfiguration, said now.
            raise LineageError(
                "LineageResolver needs a template, templates={model_id: template}, "
                "locate=..., or a subclass that overrides locate()"
            )
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        groups = tuple(self.pattern.groupindex) if self.pattern else ()
        self.template = template
        self.templates = dict(templates or {})
        for t in [template, *self.templates.values()]:
            if t is not None:
                validate_template(t, groups)
        self._locate = locate
        self.storage_options = dict(storage_options or {})
        self.concurrency = concurrency
        self.keep_bytes_up_to = keep_bytes_up_to
        self.max_bytes = max_bytes

    def describe(self) -> dict[str, Any]:
        # Storage options can hold credentials: never describe them.
        return {
            "stage": self.name,
            # A template may hold credentials (user:password@, a signed query).
            "template": public_url(self.template),
            "templates": {m: public_url(t) for m, t in self.templates.items()} or None,
            "pattern": self.pattern.pattern if self.pattern else None,
            "locate": getattr(self._locate, "__name__", None) if self._locate else None,
            "concurrency": self.concurrency,
        }

    def fields(self, sample: Sample) -> dict[str, Any]:
        """The values a template can use for this sample."""
        return sample_fields(sample)

    def locate(self, sample: Sample) -> str | None:
        """Where this sample's raw input lives, as an fsspec URL (``None``: unknown).

        The default uses ``locate=``, else the model's template, else ``template``.
        Raise :class:`UnsafeNameError` to reject a name with a reason.
        """
        if self._locate is not None:
            return self._locate(sample)
        template = self.templates.get(sample.record.model_id, self.template)
        if template is None:
            raise UnresolvedError(
                NO_TEMPLATE, f"no lineage template for model {sample.record.model_id}"
            )
        fields = self.fields(sample)
        fields.update(pattern_fields(self.pattern, sample))
        return render_template(template, fields)

    def _resolve(self, sample: Sample, filesystems: FileSystems) -> Sample | Drop:
        """Resolve one sample (runs on a worker thread): a new sample, or a drop."""
        try:
            url = self.locate(sample)
        except UnsafeNameError as exc:
            return self._drop(sample, UNSAFE_NAME, str(exc))
        except UnresolvedError as exc:
            return self._drop(sample, exc.reason, str(exc))
        if url is None:
            return self._drop(sample, NO_TEMPLATE, "locate() returned None")
        return read_source(self, sample, url, filesystems)

    def _drop(self, sample: Sample, reason: str, detail: str) -> Drop:
        model_id = sample.record.model_id
        return Drop(self.name, reason, sample.job_id, sample.input_name, detail, model_id=model_id)

    # Bounded concurrent I/O over the whole stream: a stream stage, with its async twin.

    def process_stream(self, items: Iterator[Sample]) -> Iterator[Sample | Drop]:
        filesystems = FileSystems(self.storage_options)
        yield from ordered_map(
            lambda s: self._resolve(s, filesystems), items, concurrency=self.concurrency
        )

    async def aprocess_stream(self, items: AsyncIterator[Sample]) -> AsyncIterator[Sample | Drop]:
        filesystems = FileSystems(self.storage_options)

        async def resolve(sample: Sample) -> Sample | Drop:
            # fsspec's sync API on a worker thread: works for every backend, including
            # async ones (which run their own loop), without touching ours.
            return await asyncio.to_thread(self._resolve, sample, filesystems)

        outcomes = aordered_map(resolve, items, concurrency=self.concurrency)
        async with aclosing(outcomes):  # closed early: the pending checks are cancelled
            async for outcome in outcomes:
                yield outcome
