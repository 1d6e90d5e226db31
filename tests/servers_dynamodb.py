"""moto's server serving DynamoDB, as a separate process on a free port (like `MotoServer`
for S3, whose construction, address and clean-up it reuses)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from tests.servers import MotoServer

__all__ = ["MotoDynamoServer"]

_START_TIMEOUT = 20.0

# moto's server mode (its WSGI app on werkzeug, threaded) dispatching every request but
# /moto-api straight to the DynamoDB app: moto's per-request service inference is skipped.
# moto's backend is not thread-safe (two concurrent UpdateItems of one item can both add to
# the old value), while DynamoDB applies each request to an item atomically: requests are
# handled one at a time, over connections that stay concurrent.
_MAIN = """
import sys
import threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app,
)

class KeepAliveHandler(MotoRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, *args, **kwargs):
        pass

class DynamoDispatcher(DomainDispatcherApplication):
    serial = threading.Lock()

    def __call__(self, environ, start_response):
        with self.serial:
            return list(super().__call__(environ, start_response))

    def get_application(self, environ):
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            return super().get_application(environ)
        app = self.app_instances.get("dynamodb")
        if app is None:
            with self.lock:
                app = self.app_instances.setdefault("dynamodb", self.create_app("dynamodb"))
        return app

app = DynamoDispatcher(create_backend_app)
run_simple(sys.argv[1], int(sys.argv[2]), app, threaded=True, request_handler=KeepAliveHandler)
"""


class MotoDynamoServer(MotoServer):
    """moto's DynamoDB server on a free port; `start`, `client` and `close` as for S3."""

    def start(self) -> MotoDynamoServer:
        """Start the server and wait until it answers HTTP (a failed start shows its log)."""
        log = self.directory / "moto.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _MAIN, "127.0.0.1", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=self.env,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited: {log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1):
                    return self
            except urllib.error.HTTPError:
                return self
            except OSError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError(f"moto server did not answer HTTP within {_START_TIMEOUT} s")

    def client(self, **config: Any) -> Any:
        """A boto3 DynamoDB client for this server (moto takes any credentials)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "dynamodb",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(max_pool_connections=32, retries={"max_attempts": 2}, **config),
        )
