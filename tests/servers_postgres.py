"""Start a real PostgreSQL cluster on a free local port: `initdb` in a temporary directory,
then the ``postgres`` server itself as a child process, stopped by `PostgresServer.stop`.

Shared by the test fixtures and the benchmarks. The binaries come from Debian's packages
(``apt install postgresql`` puts them in ``/usr/lib/postgresql/<version>/bin``); the newest
version found there is used, else the one ``pg_config --bindir`` names, else ``initdb`` on the
PATH. PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to
an unprivileged user (``postgres`` where the package created it, else ``unistorage-pg``,
created by ``useradd``) and every server process runs as that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers import MissingServerError, free_port

__all__ = ["PostgresServer", "postgres_bindir"]

_HOST = "127.0.0.1"
_START_TIMEOUT = 30.0
_HINT = "install it with `apt install postgresql` (Debian's package; CI installs the same)"
_FALLBACK_USER = "unistorage-pg"
# A throwaway cluster: no fsync (a kill loses nothing acknowledged, only a machine crash would),
# room for many test drivers' pools at once.
_SETTINGS = {
    "listen_addresses": _HOST,
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}


def _version(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path))


def postgres_bindir() -> Path:
    """The directory holding ``initdb``, ``postgres`` and ``pg_isready``; `MissingServerError`
    with the install hint when PostgreSQL's server is not installed."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            candidates.append(found)
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(str(Path(initdb).resolve().parent))
    for candidate in candidates:
        bindir = Path(candidate)
        if all((bindir / name).is_file() for name in ("initdb", "postgres", "pg_isready")):
            return bindir
    raise MissingServerError(f"the PostgreSQL server (initdb, postgres) is not installed; {_HINT}")


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as when we are root (None otherwise)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", _FALLBACK_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _FALLBACK_USER],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return pwd.getpwnam(_FALLBACK_USER)


def _children(pid: int) -> list[int]:
    """The pids of the processes whose parent is ``pid`` (from /proc)."""
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command name in parentheses may hold spaces: the fields after it are fixed.
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, served on a free port of 127.0.0.1.

    `start` creates the cluster (the first time) and starts the server; `stop` shuts it down
    cleanly; `kill` SIGKILLs the server and every backend, as a crash would; `start` again
    brings the same data back on the same port (acknowledged commits survive a kill: the WAL
    is written before a commit returns; ``fsync`` is off, which only an operating-system crash
    would notice). Authentication is ``trust`` for the superuser ``postgres``.
    """

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self._account = _server_user()
        self.directory = Path(tempfile.mkdtemp(prefix="unistorage-postgres-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.port = free_port()
        self.user = "postgres"
        self.database = "postgres"
        self.process: subprocess.Popen[bytes] | None = None
        if self._account is not None:
            os.chown(self.directory, self._account.pw_uid, self._account.pw_gid)

    @property
    def url(self) -> str:
        """The URL of the cluster's default database, for the postgres driver and clients."""
        return f"postgresql://{self.user}@{_HOST}:{self.port}/{self.database}"

    def _initdb(self) -> None:
        account = self._account
        completed = subprocess.run(
            [
                str(self.bindir / "initdb"),
                f"--pgdata={self.data}",
                f"--username={self.user}",
                *("--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"),
            ],
            capture_output=True,
            timeout=120,
            cwd=self.directory,
            user=None if account is None else account.pw_uid,
            group=None if account is None else account.pw_gid,
            extra_groups=None if account is None else [],
        )
        if completed.returncode != 0:
            raise RuntimeError(f"initdb failed: {completed.stdout!r} {completed.stderr!r}")

    def start(self) -> PostgresServer:
        """Start (or restart) the server and wait until it accepts queries."""
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        args = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        for name, value in _SETTINGS.items():
            args += ["-c", f"{name}={value}"]
        args += ["-c", f"unix_socket_directories={self.directory}"]
        account = self._account
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,  # no terminal signals from the test run
                user=None if account is None else account.pw_uid,
                group=None if account is None else account.pw_gid,
                extra_groups=None if account is None else [],
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log.read_text(errors='replace')}")
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", _HOST, "-p", str(self.port)],
                capture_output=True,
                timeout=10,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"postgres on port {self.port} did not start within {_START_TIMEOUT} s")

    def stop(self) -> None:
        """Shut the server down (fast shutdown: open sessions are ended)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._kill_all(process)

    def kill(self) -> None:
        """SIGKILL the server and every backend at once, as a crash would."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            self._kill_all(process)

    def freeze(self) -> None:
        """SIGSTOP the server and every backend: connections stay open, nothing answers."""
        assert self.process is not None
        for pid in [self.process.pid, *_children(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT what `freeze` stopped."""
        assert self.process is not None
        for pid in [self.process.pid, *_children(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    @staticmethod
    def _kill_all(process: subprocess.Popen[bytes]) -> None:
        # Every backend is a process group of its own (postgres calls setsid), so each is
        # killed by its pid, then waited for: a new server refuses to start beside them.
        backends = _children(process.pid)
        for pid in [process.pid, *backends]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while backends and time.monotonic() < deadline:
            backends = [pid for pid in backends if Path(f"/proc/{pid}").exists()]
            time.sleep(0.02)

    def close(self) -> None:
        """Stop the server and remove the cluster's directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
