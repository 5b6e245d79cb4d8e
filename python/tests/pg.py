"""A throwaway PostgreSQL cluster for the postgres stacks.

``initdb`` into a temporary directory, ``pg_ctl start`` with the Unix socket in
that directory, no TCP listener and ``fsync`` on; a fresh database per test;
``pg_ctl stop -m immediate`` and removal of the directory at the end. When the
tests run as root (PostgreSQL refuses to), the binaries run as the ``postgres``
system user through ``runuser -u postgres --`` and the directory is handed to
that user. Every wait is bounded. When PostgreSQL cannot be found or started,
:class:`PgError` is raised with a message saying what to install: the postgres
stacks then fail, they never skip.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "postgres"
DEBIAN_ROOT = Path("/usr/lib/postgresql")
PREFERRED_VERSION = "15"
# Bounds, in seconds, on every external command.
START_TIMEOUT = 30
COMMAND_TIMEOUT = 60


class PgError(RuntimeError):
    """PostgreSQL could not be found, started or used; the message says why."""


def find_bin_dir() -> Path:
    """``/usr/lib/postgresql/15/bin``, else the newest ``/usr/lib/postgresql/*/bin``."""
    preferred = DEBIAN_ROOT / PREFERRED_VERSION / "bin"
    if (preferred / "initdb").is_file() and (preferred / "pg_ctl").is_file():
        return preferred
    versions = []
    if DEBIAN_ROOT.is_dir():
        for entry in DEBIAN_ROOT.iterdir():
            if entry.name.isdigit() and (entry / "bin" / "initdb").is_file():
                versions.append((int(entry.name), entry / "bin"))
    if not versions:
        raise PgError(
            "no PostgreSQL found: /usr/lib/postgresql/*/bin/initdb does not exist. "
            "Install PostgreSQL (Debian: apt-get install -y postgresql)"
        )
    return max(versions)[1]


class PgCluster:
    """One throwaway cluster; :meth:`start`, :meth:`create_database`, :meth:`stop`."""

    def __init__(self) -> None:
        self.bin = find_bin_dir()
        self.as_postgres = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="tokenstore-pypg-"))
        self._names = itertools.count()
        self._started = False
        if self.as_postgres:
            try:
                user = pwd.getpwnam(SUPERUSER)
            except KeyError as exc:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise PgError(
                    "running as root, but there is no `postgres` system user to run "
                    "PostgreSQL as (Debian's postgresql package creates it)"
                ) from exc
            os.chown(self.dir, user.pw_uid, user.pw_gid)

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def log(self) -> Path:
        return self.dir / "log"

    def _command(self, program: str, *args: str) -> list[str]:
        argv = [str(self.bin / program), *args]
        if self.as_postgres:
            return ["runuser", "-u", SUPERUSER, "--", *argv]
        return argv

    def _run(self, argv: list[str], timeout: float = COMMAND_TIMEOUT) -> str:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.dir,
            )
        except subprocess.TimeoutExpired as exc:
            raise PgError(f"{argv!r} did not finish in {timeout} s") from exc
        except OSError as exc:
            raise PgError(f"cannot run {argv!r}: {exc}") from exc
        if done.returncode != 0:
            raise PgError(
                f"{argv!r} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
            )
        return done.stdout

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def start(self) -> None:
        self._run(
            self._command(
                "initdb",
                "-D", str(self.data),
                "-U", SUPERUSER,
                "-A", "trust",
                "-E", "UTF8",
                "--locale=C",
                # The data directory is thrown away; the server runs with fsync on.
                "--no-sync",
            )
        )
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.dir}' "
            "-c fsync=on -c max_connections=200"
        )
        try:
            self._run(
                self._command(
                    "pg_ctl",
                    "-D", str(self.data),
                    "-l", str(self.log),
                    "-o", options,
                    "-w", "-t", str(START_TIMEOUT),
                    "start",
                ),
                timeout=START_TIMEOUT + 10,
            )
        except PgError as exc:
            raise PgError(f"pg_ctl start failed: {exc}; server log: {self._log_tail()}") from exc
        self._started = True

    def psql(self, *statements: str, dbname: str = "postgres") -> str:
        """Runs each statement (its own transaction, one session) over the socket as
        the superuser; psql connects as any OS user."""
        argv = [
            str(self.bin / "psql") if (self.bin / "psql").is_file() else "psql",
            "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.dir),
            "-U", SUPERUSER,
            "-d", dbname,
        ]
        for sql in statements:
            argv += ["-c", sql]
        return self._run(argv)

    def create_database(self) -> str:
        """A fresh, empty database's name."""
        name = f"tokenstore_test_{os.getpid()}_{next(self._names)}"
        # This admin session only: not waiting for the commit's WAL flush halves
        # the time CREATE DATABASE takes; the stores' own sessions keep the default.
        self.psql("SET synchronous_commit = off", f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@/{dbname}?host={self.dir}"

    def stop(self) -> None:
        try:
            # Also after a failed start: a postmaster may be up regardless.
            if self._started or (self.data / "postmaster.pid").exists():
                self._run(
                    self._command(
                        "pg_ctl", "-D", str(self.data), "-m", "immediate", "-w",
                        "-t", str(START_TIMEOUT), "stop",
                    ),
                    timeout=START_TIMEOUT + 10,
                )
                self._started = False
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def start_cluster() -> PgCluster:
    """A started cluster; on any failure its directory is removed and PgError raised."""
    cluster = PgCluster()
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
