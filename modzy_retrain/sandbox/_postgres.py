"""A throwaway PostgreSQL cluster for tests and benchmarks, on loopback.

PostgreSQL is not a dependency of the library: the server binaries come from the
machine (Debian's ``postgresql-15`` puts ``initdb`` and ``pg_ctl`` in
``/usr/lib/postgresql/15/bin``, off ``PATH``; ``MODZY_RETRAIN_PG_BINDIR`` names another
folder). :func:`postgres_server` makes a cluster in a new temporary folder with its own
socket folder and a free port, listening on 127.0.0.1 only, and stops and removes it
when its context ends, also on errors. ``initdb`` refuses to run as root: as root,
the cluster runs as the ``postgres`` user (``runuser``).

Who may connect: the superuser ``postgres`` without a password (over the socket, and
TCP on loopback); any other role over TCP with its password (SCRAM), so a test can
prove a password is really used.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BINDIR_ENV = "MODZY_RETRAIN_PG_BINDIR"
_HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing, or the cluster would not start (the message
    says which, with the server's log)."""


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway cluster.

    Attributes:
        host: ``127.0.0.1``.
        port: Its TCP port.
        socket_dir: Its Unix socket folder.
        data_dir: The cluster's folder (removed at the end).
        pid: The postmaster's process id.
    """

    host: str
    port: int
    socket_dir: str
    data_dir: str
    pid: int = 0

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        """A SQLAlchemy URL over TCP (psycopg 3), without a password."""
        return f"postgresql+psycopg://{user}@{self.host}:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """A libpq connection string for the superuser, over the socket."""
        return f"host={self.socket_dir} port={self.port} dbname={database} user=postgres"


def server_binaries() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``.

    Raises:
        PostgresUnavailable: Not found: the message says what to install.
    """
    candidates = [os.environ.get(BINDIR_ENV, "")]
    found = shutil.which("initdb")
    candidates.append(os.path.dirname(found) if found else "")

    def version(path: str) -> tuple[int, ...]:
        digits = path.split("/postgresql/")[-1].split("/")[0]
        return tuple(int(p) for p in digits.split(".") if p.isdigit())

    installed = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    candidates += [os.path.dirname(p) for p in sorted(installed, key=version, reverse=True)]
    for folder in candidates:
        if folder and os.access(os.path.join(folder, "initdb"), os.X_OK):
            return Path(folder)
    raise PostgresUnavailable(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found: install them "
        "(Debian: apt-get install postgresql-15; they go to /usr/lib/postgresql/15/bin), "
        f"or set {BINDIR_ENV} to their folder"
    )


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _as_owner() -> tuple[list[str], int | None, int | None]:
    """The command prefix, uid and gid the cluster runs as (initdb refuses root)."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            "running as root, and there is no 'postgres' user to run the cluster as "
            "(initdb refuses root): install postgresql-15, which creates it"
        ) from None
    return ["runuser", "-u", "postgres", "--"], entry.pw_uid, entry.pw_gid


def _run(argv: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        raise PostgresUnavailable(
            f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}\n{tail}"
        )


@contextlib.contextmanager
def postgres_server(*, host: str = "127.0.0.1", attempts: int = 3) -> Iterator[PostgresServer]:
    """Run a throwaway PostgreSQL cluster for the duration of the ``with`` block.

    Raises:
        PostgresUnavailable: The binaries are missing or the cluster would not start.
    """
    bindir = server_binaries()
    prefix, uid, gid = _as_owner()
    base = Path(tempfile.mkdtemp(prefix="modzy-retrain-pg-"))
    data, sockets, log = base / "data", base / "sock", base / "server.log"
    started = False
    try:
        sockets.mkdir()
        if uid is not None and gid is not None:
            for path in (base, sockets):
                os.chown(path, uid, gid)
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--no-sync"]
        _run([*prefix, *initdb, "-A", "trust", "-E", "UTF8", "--locale=C"], "initdb")
        hba = data / "pg_hba.conf"
        hba.write_text(_HBA)
        if uid is not None and gid is not None:
            os.chown(hba, uid, gid)
        pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
        for attempt in range(attempts):
            port = _free_port(host)
            options = f"-c listen_addresses={host} -p {port} -k {sockets} -c fsync=off"
            try:
                start = [*pg_ctl, "-o", options, "-l", str(log), "-w", "-t", "60", "start"]
                _run(start, "pg_ctl start", log)
            except PostgresUnavailable:
                if attempt == attempts - 1:  # the port was taken meanwhile: another one
                    raise
                continue
            started = True
            break
        pid = int((data / "postmaster.pid").read_text().split()[0])
        yield PostgresServer(host, port, str(sockets), str(data), pid)
    finally:
        if started:
            with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
                _run([*pg_ctl, "stop", "-m", "fast", "-w", "-t", "30"], "pg_ctl stop")
        shutil.rmtree(base, ignore_errors=True)
