"""``SqlLineageResolver``: each sample's raw input found through a query on a database.

The sibling of :class:`LineageResolver`, with its contract: the same stage name
(``resolve``), samples out with ``source_url``, ``sha256`` and ``size``, drops with the
same reasons. A query answers, for a record, either the input's bytes (a ``payload``
column) or a pointer to them (a ``url`` or ``path`` column) that is checked like a
template's result and read through fsspec. Work goes in two steps, each bounded:

1. lookups: the stream is cut into batches of ``batch_size`` samples, each batch
   grouped by query, and each group asked in one query (the batched form, ``IN
   :keys``) or one query per sample (the one-key form), ``concurrency`` batches at
   once on a pool of as many connections;
2. reading: payloads are sized and hashed, pointers and the fallback's templates
   read and hashed, on ``file_concurrency`` threads.

Both keep input order, and hold at most a window of batches: memory stays flat however
many records come through.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal

from modzy_retrain._core.concurrency import ordered_map
from modzy_retrain._core.exceptions import LineageError, UnsafeNameError
from modzy_retrain._core.fs import FileSystems
from modzy_retrain._core.secrets import public_url

from .base import Stage
from .lineage import (
    DEFAULT_KEEP_BYTES,
    DEFAULT_LINEAGE_CONCURRENCY,
    TEMPLATE_FIELDS,
    LineageResolver,
    UnresolvedError,
    check_limits,
    check_pointer,
    pattern_fields,
    read_source,
    sample_fields,
)
from .records import Sample
from .report import (
    AMBIGUOUS_SOURCE,
    NO_TEMPLATE,
    SOURCE_MISSING,
    SOURCE_TOO_LARGE,
    SOURCE_UNREADABLE,
    UNSAFE_NAME,
    Drop,
)
from .sql_database import Database, DatabaseRetry, Held
from .sql_query import (
    Answer,
    LineageQuery,
    answer_of,
    as_text,
    key_text,
    parse_query,
    payload_bytes,
    pointer_text,
    reference,
)

DEFAULT_SQL_CONCURRENCY = 4
# Keys bound in one query. Two-column keys make twice as many parameters: 512 stays
# under SQLite's oldest limit (999 variables) and far under PostgreSQL's (65,535).
DEFAULT_BATCH_SIZE = 256


@dataclass(frozen=True)
class _Found:
    """A sample whose input is still to be read: a pointer, or the fallback's template."""

    sample: Sample
    kind: Literal["pointer", "template"]
    value: Any = None  # the pointer
    ref: str = ""  # the row's reference


_Outcome = Sample | Drop | _Found


class _TooLarge:
    """A payload over ``max_bytes``: its size kept, its bytes let go at once."""

    def __init__(self, size: int) -> None:
        self.size = size


class SqlLineageResolver(Stage[Sample, Sample]):
    """Find each sample's raw input through a query on a database, check it, and record
    its size and sha256 (its bytes copied into the dataset like a file's).

    Args:
        database: A SQLAlchemy URL (``sqlite:////data/requests.db``,
            ``postgresql://reader@db:5432/prod``: PostgreSQL goes through psycopg 3),
            never with a password in it, or an ``Engine`` used as it is.
        query: The lineage query, with the record's values as bound parameters:
            ``:job_id``, ``:input_name``, ``:model_id``, ``:model_version``,
            ``:model_name``, ``:submitted_at``, ``:label``, ``:predicted_label`` and the
            named groups of ``pattern``. It answers a ``payload`` column (the bytes: a
            BLOB, BYTEA or text column) or a ``url`` / ``path`` column (a pointer:
            a URL or an absolute path, read through fsspec). The batched form binds
            many keys at once and answers its key columns too:
            ``SELECT job_id, input_name, payload FROM requests WHERE (job_id,
            input_name) IN :keys``; any other query runs once per sample.
        queries: One query per model id, over ``query``.
        pattern: A regular expression that must match the whole input name; its named
            groups can be bound (no match: ``name_pattern_mismatch``).
        root: Pointers must lie under this URL or folder (else ``unsafe_name``);
            relative pointers are taken under it.
        fallback: A :class:`LineageResolver` for the models that have no query here
            (per-model templates, or its template for every other model).
        storage_options: fsspec options to read pointers.
        concurrency: Lookups at once, and the connections of the pool (default 4).
        batch_size: Samples per lookup batch, and keys per batched query (256).
        file_concurrency: Pointers read and payloads hashed at once (16).
        keep_bytes_up_to: Pointed files this small keep their bytes for the writer
            (4 MiB). Payloads always keep theirs: there is nothing to read again.
        max_bytes: Refuse inputs larger than this (``source_too_large``).
        password_env: The environment variable holding the database's password, when
            the driver's own conventions (``PGPASSWORD``, ``~/.pgpass``) are not used.
        retry: How a lookup is retried when the database is down or drops the
            connection (:class:`DatabaseRetry`); then :class:`DatabaseError`.
        sleep: What waits between attempts (tests pass a recorder).

    Drops: those of :class:`LineageResolver`, and ``ambiguous_source`` (several rows
    for one key). No row, or a NULL payload or pointer, is ``source_missing``.
    """

    name = "resolve"

    def __init__(
        self,
        database: Any,
        query: str | None = None,
        *,
        queries: Mapping[str, str] | None = None,
        pattern: str | re.Pattern[str] | None = None,
        root: str | None = None,
        fallback: LineageResolver | None = None,
        storage_options: Mapping[str, Any] | None = None,
        concurrency: int = DEFAULT_SQL_CONCURRENCY,
        batch_size: int = DEFAULT_BATCH_SIZE,
        file_concurrency: int = DEFAULT_LINEAGE_CONCURRENCY,
        keep_bytes_up_to: int = DEFAULT_KEEP_BYTES,
        max_bytes: int | None = None,
        password_env: str | None = None,
        retry: DatabaseRetry | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        what = "SqlLineageResolver"
        check_limits(what, concurrency, keep_bytes_up_to, max_bytes)
        for name, value in (("batch_size", batch_size), ("file_concurrency", file_concurrency)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LineageError(f"{what}: {name} must be a whole number of at least 1")
        if fallback is not None and not isinstance(fallback, LineageResolver):
            raise LineageError(f"{what}: fallback takes a LineageResolver")
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        allowed = {*TEMPLATE_FIELDS, *(self.pattern.groupindex if self.pattern else ())}
        self.query = parse_query(query, allowed) if query is not None else None
        self.queries = {m: parse_query(q, allowed) for m, q in (queries or {}).items()}
        self.fallback = fallback
        self._check_routes()
        self.root = root
        self.storage_options = dict(storage_options or {})
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.file_concurrency = file_concurrency
        self.keep_bytes_up_to = keep_bytes_up_to
        self.max_bytes = max_bytes
        self.db = Database(
            database, pool_size=concurrency, password_env=password_env, retry=retry, sleep=sleep
        )
        self._statements = {
            q.sql: self.db.statement(q.sql, batched=q.batched) for q in self._all_queries()
        }

    def _check_routes(self) -> None:
        fallback = self.fallback
        if self.query is None and not self.queries:
            raise LineageError(
                "SqlLineageResolver needs a query, or queries={model_id: query} "
                "(and a LineageResolver as fallback for the other models)"
            )
        if fallback is None:
            return
        both = sorted(set(self.queries) & set(fallback.templates))
        if both:
            raise LineageError(f"model {both[0]} has a lineage query and a template: give one")
        catches_all = (
            fallback.template is not None
            or fallback._locate is not None
            or type(fallback).locate is not LineageResolver.locate
        )
        if self.query is not None and catches_all:
            raise LineageError(
                "a default lineage query and a default template (or locate): give one; "
                "per-model queries and templates may sit beside either"
            )

    def _all_queries(self) -> list[LineageQuery]:
        return [q for q in (self.query, *self.queries.values()) if q is not None]

    def describe(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "database": self.db.reference,  # credential-free: no user, no password
            "query": self.query.sql if self.query else None,
            "queries": {m: q.sql for m, q in self.queries.items()} or None,
            "pattern": self.pattern.pattern if self.pattern else None,
            "root": public_url(self.root),
            "concurrency": self.concurrency,
            "batch_size": self.batch_size,
            "fallback": self.fallback.describe() if self.fallback else None,
        }

    def check(self) -> None:
        """Ask each query once, with every parameter NULL (so no row answers): the
        database answers, accepts the query, and its columns name one shape.

        ``modzy-retrain build`` calls it before any request to the API.

        Raises:
            DatabaseError: The database cannot be reached (after the retries) or
                refuses a query.
            LineageError: A query's columns name no shape, or several.
        """
        try:
            for query in self._all_queries():
                params: dict[str, Any] = dict.fromkeys(query.params)
                if query.batched:
                    nulls = tuple(None for _ in query.key_fields)
                    params["keys"] = [nulls if len(nulls) > 1 else None]
                self.db.run(self._statements[query.sql], params, _shape_of(query))
        finally:
            self.db.close()  # no connection left open until the run

    # -- step 1: lookups -----------------------------------------------------------------

    def _route(self, model_id: str) -> LineageQuery | LineageResolver | None:
        """A model uses what it is given: its query, its template, then the defaults."""
        if model_id in self.queries:
            return self.queries[model_id]
        fallback = self.fallback
        if fallback is not None and model_id in fallback.templates:
            return fallback
        return self.query if self.query is not None else fallback

    def _drop(self, sample: Sample, reason: str, detail: str) -> Drop:
        model_id = sample.record.model_id
        return Drop(self.name, reason, sample.job_id, sample.input_name, detail, model_id=model_id)

    def _values(self, sample: Sample, query: LineageQuery) -> dict[str, Any]:
        values = sample_fields(sample)
        values.update(pattern_fields(self.pattern, sample))
        for name in query.fields:
            if values.get(name) is None:
                raise UnresolvedError(NO_TEMPLATE, f"query parameter :{name} has no value")
        return {name: values[name] for name in query.fields}

    def _look_up(self, batch: list[Sample]) -> list[_Outcome]:
        """One batch (a lookup worker, one connection): each sample's outcome, in order.

        Payloads are settled here (sized, hashed); pointers and the fallback's
        templates are left to be read.
        """
        found: list[_Outcome | None] = [None] * len(batch)
        groups: dict[tuple[str, tuple[str, ...]], list[tuple[int, dict[str, Any]]]] = {}
        queries: dict[str, LineageQuery] = {}
        with self.db.hold() as held:
            for i, sample in enumerate(batch):
                route = self._route(sample.record.model_id)
                if route is None:
                    detail = f"no lineage query or template for model {sample.record.model_id}"
                    found[i] = self._drop(sample, NO_TEMPLATE, detail)
                    continue
                if isinstance(route, LineageResolver):
                    found[i] = _Found(sample, "template")
                    continue
                try:
                    values = self._values(sample, route)
                except UnresolvedError as exc:
                    found[i] = self._drop(sample, exc.reason, str(exc))
                    continue
                if not route.batched:
                    found[i] = self._one(sample, route, values, held)
                    continue
                # One query per query and value of its other parameters (a model id...).
                key = route.key_fields
                scalars = tuple(as_text(values[p]) for p in route.params if p not in key)
                queries[route.sql] = route
                groups.setdefault((route.sql, scalars), []).append((i, values))
            for (sql, _), members in groups.items():
                group = [(i, batch[i], v) for i, v in members]
                for i, result in self._many(queries[sql], group, held):
                    found[i] = result
        # Every sample was answered: by a drop, a query or the fallback.
        return [f for f in found if f is not None]

    def _one(
        self, sample: Sample, query: LineageQuery, values: dict[str, Any], held: Held
    ) -> _Outcome:
        """The one-key form: one query, at most two rows read (two is ambiguous)."""

        def read(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Any:
            answer = answer_of(columns, query)
            return answer.shape, [self._keep(answer, row) for row in islice(rows, 2)]

        params = {name: values[name] for name in query.params}
        shape, rows = self.db.run(self._statements[query.sql], params, read, held)
        return self._answer(sample, shape, rows, reference(self.db.reference, query, values))

    def _many(
        self, query: LineageQuery, members: list[tuple[int, Sample, dict[str, Any]]], held: Held
    ) -> Iterator[tuple[int, _Outcome]]:
        """The batched form: one query for many keys, its rows mapped back by key."""
        wanted: dict[tuple[str, ...], tuple[Any, ...]] = {}
        keyed = []
        for _, _, values in members:
            key = tuple(values[f] for f in query.key_fields)
            keyed.append(key_text(key))
            wanted.setdefault(keyed[-1], key)
        # The other parameters are the same for the whole group: the first member's.
        params: dict[str, Any] = {p: members[0][2][p] for p in query.params}
        params = {p: v for p, v in params.items() if p not in query.key_fields}
        params["keys"] = [k if len(k) > 1 else k[0] for k in wanted.values()]

        def read(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Any:
            answer = answer_of(columns, query)
            first: dict[tuple[str, ...], Any] = {}
            count: Counter[tuple[str, ...]] = Counter()
            for row in rows:
                key = key_text([row[i] for i in answer.keys])
                count[key] += 1
                if count[key] == 1 and key in wanted:
                    first[key] = self._keep(answer, row)
            return answer.shape, first, count

        shape, first, count = self.db.run(self._statements[query.sql], params, read, held)
        for (i, sample, values), key in zip(members, keyed, strict=True):
            rows = [first[key]] * min(count[key], 2) if key in first else []
            yield i, self._answer(sample, shape, rows, reference(self.db.reference, query, values))

    def _keep(self, answer: Answer, row: Sequence[Any]) -> tuple[Any, str]:
        """A row's answer as kept until it is read (a payload over the limit let go at
        once), and its extension."""
        value = row[answer.column]
        if answer.shape == "payload" and value is not None and self.max_bytes is not None:
            size = len(value.encode("utf-8")) if isinstance(value, str) else len(value)
            if size > self.max_bytes:
                value = _TooLarge(size)
        return value, answer.extension_of(row)

    def _answer(
        self, sample: Sample, shape: str, rows: list[tuple[Any, str]], ref: str
    ) -> _Outcome:
        if not rows:
            return self._drop(sample, SOURCE_MISSING, f"no row for {ref}")
        if len(rows) > 1:
            return self._drop(sample, AMBIGUOUS_SOURCE, f"several rows for {ref}")
        value, extension = rows[0]
        ref = f"{ref}/payload{extension}" if extension else ref
        if value is None:
            return self._drop(sample, SOURCE_MISSING, f"the {shape} of {ref} is NULL")
        if isinstance(value, _TooLarge):
            detail = f"{ref}: {value.size:,} bytes, larger than the {self.max_bytes}-byte limit"
            return self._drop(sample, SOURCE_TOO_LARGE, detail)
        if shape == "pointer":
            return _Found(sample, "pointer", value, ref)
        try:
            data = payload_bytes(value)
        except TypeError as exc:
            return self._drop(sample, SOURCE_UNREADABLE, f"{ref}: {exc}")
        # Kept on the sample whatever its size: there is nothing to read again.
        digest = hashlib.sha256(data).hexdigest()
        return sample.with_payload(data, source_url=ref, sha256=digest, size=len(data))

    # -- step 2: reading -----------------------------------------------------------------

    def _read(self, found: _Found, files: FileSystems, fallback_files: FileSystems) -> Any:
        """A pointer or a template (a reading worker): the resolved sample, or a drop."""
        sample = found.sample
        if found.kind == "template":
            assert self.fallback is not None
            return self.fallback._resolve(sample, fallback_files)
        try:
            url = check_pointer(pointer_text(found.value), self.root)
        except UnsafeNameError as exc:
            return self._drop(sample, UNSAFE_NAME, f"{exc} ({found.ref})")
        return read_source(self, sample, url, files)

    def _settle(
        self,
        batch: list[_Outcome],
        pool: ThreadPoolExecutor,
        files: FileSystems,
        fallback_files: FileSystems,
    ) -> list[Sample | Drop]:
        """A looked-up batch, its pointers and templates read on the reading threads
        (a batch of payloads goes straight through)."""
        settled: list[Sample | Drop] = []
        futures = {
            i: pool.submit(self._read, f, files, fallback_files)
            for i, f in enumerate(batch)
            if isinstance(f, _Found)
        }
        try:
            for i, outcome in enumerate(batch):
                settled.append(futures[i].result() if isinstance(outcome, _Found) else outcome)
        finally:
            for future in futures.values():
                future.cancel()  # closed early: what has not started never will
        return settled

    def process_stream(self, items: Iterator[Sample]) -> Iterator[Sample | Drop]:
        files = FileSystems(self.storage_options)
        fallback = self.fallback
        fallback_files = FileSystems(fallback.storage_options) if fallback else files
        batches = iter(lambda: list(islice(items, self.batch_size)), [])
        # One batch ahead per connection, none queued beyond: a batch holds its payloads.
        looked_up = ordered_map(
            self._look_up, batches, concurrency=self.concurrency, window=self.concurrency
        )
        pool = ThreadPoolExecutor(self.file_concurrency, thread_name_prefix="modzy-retrain")
        try:
            for batch in looked_up:
                yield from self._settle(batch, pool, files, fallback_files)
        finally:
            # Closed early or failed: lookups waiting to retry give up, pending work is
            # cancelled, running work is waited for, the pool's connections let go.
            self.db.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            looked_up.close()
            self.db.close()

    def __repr__(self) -> str:
        query = f"query={self.query.sql!r}" if self.query else f"queries={len(self.queries)}"
        return f"SqlLineageResolver(database={self.db.reference!r}, {query})"


def _shape_of(query: LineageQuery) -> Any:
    """A reader that only checks the answer's columns."""

    def read(columns: Sequence[str], _rows: Iterable[Sequence[Any]]) -> Answer:
        return answer_of(columns, query)

    return read
