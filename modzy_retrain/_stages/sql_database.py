"""The database a lineage query reads: one small pool, bounded retries, typed errors.

SQLAlchemy and the driver are the ``sql`` extra, imported here when a stage that
needs them is built, never by ``import modzy_retrain``. The engine's pool holds as many
connections as lookups run at once, and no more (no overflow). Every query runs in a
transaction that is rolled back when its connection goes back to the pool: lineage
only reads.

Passwords never sit in a URL the library takes: a URL holding one is refused. They
come from the driver's own conventions (libpq's ``PGPASSWORD``, ``~/.pgpass``, a
service file) or from an environment variable the stage names (``password_env``), set
on the engine and never written anywhere: what the library shows of the database is
its credential-free reference (``postgresql://db:5432/prod``), and driver messages are
redacted of the password before they reach an exception.

Retries (pure decisions, tenacity as the driver, as the API clients'): a database
that cannot be reached, a dropped connection (the pool's connection is thrown away
and a new one made), a pool that stayed full, a server shutting down or short of
resources, a serialization failure, SQLite's busy or locked file. A query the
database refuses (a missing table, a syntax error, a permission, the credentials) is
not retried. When the attempts or the time budget run out, :class:`DatabaseError`.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any, TypeVar

import tenacity
from pydantic import Field

from modzy_retrain._core.backoff import wait_seconds
from modzy_retrain._core.exceptions import (
    ConfigurationError,
    DatabaseError,
    LineageError,
    MissingDependencyError,
)
from modzy_retrain._core.options import FrozenOptions
from modzy_retrain._core.secrets import public_url, redact

logger = logging.getLogger("modzy_retrain")
T = TypeVar("T")

# How long a connection may take to open (libpq's default is to wait for ever).
CONNECT_TIMEOUT_S = 10
# How long a lookup waits for a pooled connection before that counts as a failure.
POOL_TIMEOUT_S = 30
# SQLSTATE classes worth another attempt: connection exception, insufficient resources,
# operator intervention (shutdown), transaction rollback (serialization), system error.
_RETRY_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "40", "58"})
_RETRY_SQLITE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN")
# What libpq says when the server turned a connection away for good (no SQLSTATE
# reaches the client then): the credentials, the role or database, the rules.
_REFUSED = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "permission denied",
)
_CREDENTIALS = ("password", "authentication", "pg_hba")


class DatabaseRetry(FrozenOptions):
    """How a lineage query is retried when the database is down or drops the connection.

    Attributes:
        max_attempts: Attempts in all, the first one included (1 disables retrying).
        max_total_seconds: Budget of one lookup, waits included; a wait that would
            overrun it is not started, and the last error is raised.
        initial_wait: First backoff wait, in seconds; it doubles on each retry.
        max_wait: Ceiling of one backoff wait.
        jitter: Up to this many seconds, at random, added to a backoff wait.
    """

    max_attempts: int = Field(default=5, ge=1)
    max_total_seconds: float = Field(default=120.0, gt=0)
    initial_wait: float = Field(default=0.5, ge=0)
    max_wait: float = Field(default=10.0, ge=0)
    jitter: float = Field(default=0.5, ge=0)


DEFAULT_RETRY = DatabaseRetry()


def sqlalchemy() -> ModuleType:
    """SQLAlchemy, or the extra to install."""
    try:
        import sqlalchemy
    except ImportError:
        raise MissingDependencyError(
            "lineage queries need SQLAlchemy: pip install 'modzy-retrain[sql]'"
        ) from None
    return sqlalchemy


def reference_base(url: Any) -> str:
    """A database's credential-free reference: dialect, host, port and name (no user,
    no password, no query options). A relative SQLite file is made absolute."""
    backend = url.get_backend_name()
    host = url.host or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{url.port}" if url.port else ""
    database = url.database or ""
    if backend == "sqlite" and database and not database.startswith(("/", ":", "file:")):
        database = os.path.abspath(database)
    return f"{backend}://{host}{port}/{database}"


def is_retryable(sa: ModuleType, exc: BaseException) -> bool:
    """Whether another attempt on a new connection could succeed where this one failed."""
    if isinstance(exc, sa.exc.TimeoutError):  # no pooled connection came free in time
        return True
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:  # the driver said the connection is gone
        return True
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state:
        return str(state)[:2] in _RETRY_SQLSTATE_CLASSES
    sqlite = getattr(orig, "sqlite_errorname", None)  # Python 3.11+
    if sqlite:
        return str(sqlite).startswith(_RETRY_SQLITE)
    if _turned_away(exc):
        return False
    # No code: connecting failed (refused, no route), or a driver that says no more.
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))


def _turned_away(exc: BaseException) -> bool:
    """The server refused the connection itself: credentials, role, database, rules."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    return any(phrase in text for phrase in _REFUSED)


class _Stopped(Exception):
    """The stage was closed while a lookup waited to try again."""


class Held:
    """One pooled connection kept across lookups; a failed one is let go (the next
    lookup checks out another). Its transaction is rolled back when it goes back."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._connection: Any = None

    def get(self) -> Any:
        if self._connection is None:
            self._connection = self._engine.connect()
        return self._connection

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # a dropped connection may fail to roll back: it is gone
                logger.debug("closing a lineage connection failed", exc_info=True)

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Database:
    """One lineage database for a stage: its engine, reference, and retried reads.

    Args:
        database: A SQLAlchemy URL (no password in it), or an ``Engine`` used as it
            is (its pool and credentials are yours; it is never disposed here).
        pool_size: Connections the engine may hold (lookups run at once).
        password_env: The environment variable holding the password, if any.
        environ: Where it is read (``os.environ``).
        retry: The retry budget of one lookup.
        sleep: What waits between attempts (default: a wait that the stage's close
            cuts short); tests pass a recorder.
    """

    def __init__(
        self,
        database: Any,
        *,
        pool_size: int,
        password_env: str | None = None,
        environ: Mapping[str, str] | None = None,
        retry: DatabaseRetry | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        sa = sqlalchemy()
        self._sa = sa
        env = os.environ if environ is None else environ
        password: str | None = None
        if isinstance(database, sa.engine.Engine):
            if password_env is not None:
                raise LineageError("password_env is for a database URL: an Engine has its own")
            self.engine, self.owned = database, False
            url = database.url
        elif isinstance(database, str):
            url = self._url(sa, database)
            if password_env is not None:
                password = env.get(password_env)
                if not password:
                    raise ConfigurationError(
                        f"the lineage database's password: ${password_env} is not set"
                    )
                url = url.set(password=password)
            self.engine, self.owned = self._engine(sa, url, pool_size), True
        else:
            raise LineageError(
                f"database takes a SQLAlchemy URL or Engine, not {type(database).__name__}"
            )
        self.reference = reference_base(url)
        # What a driver's message could echo: the password set here, and libpq's.
        self._secrets = tuple(s for s in (password, env.get("PGPASSWORD")) if s)
        self.retry = retry or DEFAULT_RETRY
        self._stopping = threading.Event()
        self._sleep = sleep or self._wait
        self._rng = random.Random()

    @staticmethod
    def _url(sa: ModuleType, text: str) -> Any:
        try:
            url = sa.engine.make_url(text)
        except (sa.exc.ArgumentError, ValueError):
            raise LineageError(
                f"not a SQLAlchemy database URL: {public_url(text)!r} "
                "(e.g. sqlite:////data/requests.db, postgresql://reader@db:5432/prod)"
            ) from None
        if url.password is not None:
            raise LineageError(
                f"the lineage database URL {reference_base(url)} holds a password: take it "
                "out, and give it through the driver's conventions (PGPASSWORD, ~/.pgpass, "
                "a service file) or password_env (--input-database-password-env)"
            )
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")  # the driver the extra brings
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            raise LineageError(
                "an in-memory SQLite database is a new, empty one on every connection: "
                "give a file (sqlite:////path/to/file.db) or pass an Engine"
            )
        return url

    @staticmethod
    def _engine(sa: ModuleType, url: Any, pool_size: int) -> Any:
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        pool = {"pool_size": pool_size, "max_overflow": 0, "pool_timeout": POOL_TIMEOUT_S}
        try:
            try:
                # Record values never go into an error's text (hide_parameters).
                return sa.create_engine(
                    url, hide_parameters=True, connect_args=connect_args, **pool
                )
            except TypeError:  # a dialect whose pool takes no size (NullPool)
                return sa.create_engine(url, hide_parameters=True, connect_args=connect_args)
        except (ImportError, sa.exc.NoSuchModuleError) as exc:
            raise MissingDependencyError(
                f"the lineage database {reference_base(url)} needs its driver ({exc}): "
                "pip install 'modzy-retrain[sql]' (PostgreSQL), or the driver of your database"
            ) from None

    def statement(self, sql: str, *, batched: bool) -> Any:
        """The query as a SQLAlchemy ``text()``; ``:keys`` expanding in the batched form."""
        sa = self._sa
        clause = sa.text(sql)
        if batched:
            clause = clause.bindparams(sa.bindparam("keys", expanding=True))
        return clause

    def hold(self) -> Held:
        """A connection for several lookups in a row (a batch's), made when first used."""
        return Held(self.engine)

    def run(
        self,
        statement: Any,
        params: Mapping[str, Any],
        read: Callable[[Sequence[str], Iterable[Sequence[Any]]], T],
        held: Held | None = None,
    ) -> T:
        """Execute ``statement`` and hand its columns and rows to ``read``.

        ``read`` starts from nothing on each attempt (a dropped connection may have
        cut the rows short), and may stop reading early. On ``held``'s connection
        (kept for the next lookup), else on one from the pool for this lookup only.

        Raises:
            DatabaseError: Still failing after the retries, or refused.
        """
        sa = self._sa
        attempts = 0
        holder = held or Held(self.engine)

        def once() -> T:
            nonlocal attempts
            attempts += 1
            if self._stopping.is_set():
                raise _Stopped
            connection = holder.get()
            try:
                # A client-side cursor: a server-side one (stream_results) is left open
                # by a connection that drops mid-query. A lookup's rows are bounded by
                # its keys (one row each, when the query is right).
                result = connection.execute(statement, params)
                try:
                    return read(list(result.keys()), result)
                finally:
                    result.close()
            except BaseException:
                holder.close()  # the next attempt starts on a new connection
                raise

        retrying = tenacity.Retrying(
            stop=self._stop,
            wait=self._wait_for,
            retry=tenacity.retry_if_exception(lambda e: is_retryable(sa, e)),
            before_sleep=self._log,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(once)
        except sa.exc.SQLAlchemyError as exc:
            raise self.error(exc, attempts) from None
        finally:
            if held is None:
                holder.close()

    def error(self, exc: BaseException, attempts: int) -> DatabaseError:
        """The typed error for a failure, its text redacted of any password."""
        orig = getattr(exc, "orig", None) or exc
        lines = str(orig).strip().splitlines()
        said = redact(lines[0].strip(), self._secrets) if lines else ""
        retryable = is_retryable(self._sa, exc)
        state = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
        if retryable:
            what = f"could not be read after {attempts} attempt{'s' if attempts != 1 else ''}"
        elif state.startswith("28") or (
            _turned_away(exc) and any(w in said.lower() for w in _CREDENTIALS)
        ):
            what = "refused the credentials"
        else:
            what = "refused the lineage query"
        return DatabaseError(
            f"the lineage database {self.reference} {what}: {type(orig).__name__}: {said}",
            database=self.reference,
            attempts=attempts,
            retryable=retryable,
        )

    # -- the retry budget (as the API clients': attempts, and the time with the waits) --

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= self.retry.max_attempts or self._stopping.is_set():
            return True
        # idle_for counts the waits done: with an injected sleep no time passes.
        spent = max(state.seconds_since_start or 0.0, state.idle_for)
        return spent + (state.upcoming_sleep or 0.0) > self.retry.max_total_seconds

    def _wait_for(self, state: tenacity.RetryCallState) -> float:
        r = self.retry
        return wait_seconds(
            state.attempt_number,
            None,
            initial_wait=r.initial_wait,
            max_wait=r.max_wait,
            jitter=r.jitter,
            max_retry_after=0.0,
            rng=self._rng,
        )

    def _log(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        logger.info(
            "retrying the lineage query on %s in %.2f s after attempt %d failed: %s",
            self.reference,
            state.upcoming_sleep or 0.0,
            state.attempt_number,
            type(exc).__name__,
        )

    def _wait(self, seconds: float) -> None:
        # Cut short when the stage closes: a lookup nobody waits for stops retrying.
        self._stopping.wait(seconds)

    def stop(self) -> None:
        """Stop retrying: lookups waiting to try again give up (the stage is closing)."""
        self._stopping.set()

    def close(self) -> None:
        """Let go of the pooled connections (an Engine passed in is left as it is)."""
        if self.owned:
            self.engine.dispose()
        self._stopping = threading.Event()

    def __repr__(self) -> str:
        return f"Database({self.reference!r})"
