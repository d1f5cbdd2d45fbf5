"""Helpers for the proxy's unit tests: a recording upstream and the proxy, both on loopback.

The upstream stands where SageMaker would be: it records what arrives on the wire and answers
what the test tells it to. The proxy is the real app under werkzeug's threaded server; the
gunicorn test runs it the way the instances do.
"""

import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import botocore.session
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from local.stand_in import PROXY_PYTHON

TRACKING_ARN = "arn:aws:sagemaker:us-west-2:123456789012:mlflow-tracking-server/test-server"
APP_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-app/app-ABCDEF123456"
ACCESS_KEY = "AKIDTESTPROXYUNIT"
SECRET_KEY = "proxy-unit-test-secret-key-0123456789"
WRITER_TOKEN = "writer-token-0123456789abcdef"
READER_TOKEN = "reader-token-0123456789abcdef"
TOKENS_JSON = (
    f'[{{"name": "ci", "token": "{WRITER_TOKEN}", "access": "read-write"}},'
    f' {{"name": "dashboards", "token": "{READER_TOKEN}", "access": "read-only"}}]'
)


@dataclass
class Recorded:
    method: str
    raw_uri: str  # path and query exactly as they arrived
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class FakeUpstream:
    """An HTTP server in a thread that records requests and answers with `respond`."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    respond: Callable[[Request], Response] = lambda request: Response(
        '{"ok": true}', content_type="application/json"
    )

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.requests.append(
            Recorded(
                method=request.method,
                raw_uri=environ.get("RAW_URI") or environ.get("REQUEST_URI"),
                headers=list(request.headers.items()),
                body=request.get_data(),
            )
        )
        return self.respond(request)(environ, start_response)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]


def serve_in_thread(wsgi_app):
    """Start a threaded werkzeug server on an ephemeral loopback port; returns (url, stop)."""
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()
        thread.join()

    return f"http://127.0.0.1:{server.server_port}", stop


WRITER = {"Authorization": f"Bearer {WRITER_TOKEN}"}
READER = {"Authorization": f"Bearer {READER_TOKEN}"}


class CapturedLog(logging.Handler):
    """Collects log messages. The access line is written once the response is closed, which
    can be just after the client has read it: `access_lines` waits for the expected count."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self._changed = threading.Condition()

    def emit(self, record):
        with self._changed:
            self.lines.append(record.getMessage())
            self._changed.notify_all()

    def access_lines(self, count: int) -> list[str]:
        with self._changed:
            self._changed.wait_for(lambda: len(self._access()) >= count, timeout=10)
            return self._access()

    def access_entries(self, count: int) -> list[dict]:
        """The access lines, parsed: each must be one JSON object."""
        return [json.loads(line) for line in self.access_lines(count)]

    def _access(self) -> list[str]:
        return [line for line in self.lines if line.startswith('{"client": ')]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


APP_DIR = Path(__file__).parents[3] / "helpers" / "app"
GUNICORN = PROXY_PYTHON.with_name("gunicorn")  # the proxy's own virtualenv, as on the instances


def run_in_proxy_python(code: str) -> subprocess.CompletedProcess:
    """`code` run by the proxy's own Python (gevent and gunicorn are in .venv-proxy only), with
    the app importable; fails with its stderr if it raises."""
    result = subprocess.run(
        [str(PROXY_PYTHON), "-c", code],
        env={"PYTHONPATH": str(APP_DIR), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def gunicorn_environment(**variables):
    """The environment of a proxy under gunicorn: only what the test sets, no AWS files."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "SM_MLFLOW_", "MLFLOW_PROXY_"))
    }
    environ.update(
        PYTHONPATH=str(APP_DIR),
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_EC2_METADATA_DISABLED="true",
        **variables,
    )
    return environ


class Gunicorn:
    """gunicorn in a subprocess; its stderr is collected line by line by a reader thread."""

    def __init__(self, environ, *options: str):
        self.process = subprocess.Popen(
            [
                str(GUNICORN),
                "-c",
                str(APP_DIR / "gunicorn.conf.py"),
                "--bind",
                "127.0.0.1:0",
                # One worker: it has served the requests, so it is up when SIGTERM comes. A
                # worker still booting misses the signal and is only killed after
                # graceful_timeout, which would make the shutdown check slow and flaky.
                "--workers",
                "1",
                *options,
                "mlflow_proxy:create_app()",
            ],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = []
        self._new_lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line)
            self._new_lines.put(line)
        self._new_lines.put(None)

    def wait_for_line(self, pattern):
        """The first stderr line matching `pattern`, or None if gunicorn stops first."""
        while True:
            try:
                line = self._new_lines.get(timeout=60)
            except queue.Empty:
                return None
            if line is None:
                return None
            match = re.search(pattern, line)
            if match:
                return match

    def url(self) -> str:
        """The base URL once gunicorn listens; fails with its output if it never does."""
        listening = self.wait_for_line(r"Listening at: (http://127\.0\.0\.1:\d+)")
        assert listening, "".join(self.lines)
        return listening[1]

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=10)
        return self.process.returncode


MOTO_SERVER = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "moto_server"


@contextmanager
def moto_server():
    """moto_server on a free loopback port: S3 or Secrets Manager where AWS would be. Yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=15)


def s3_client(endpoint_url: str, config=None):
    """A client of the test's own, to arrange and inspect what is in S3."""
    return botocore.session.Session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


def all_keys(s3, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@contextmanager
def raw_upstream(response: bytes):
    """An upstream on a raw socket that answers every request with `response`, byte for byte
    (framing no HTTP library would write), then closes. Yields (url, requests received)."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            with connection:
                connection.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    more = connection.recv(65536)
                    if not more:
                        break
                    data += more
                received.append(data)
                connection.sendall(response)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        listener.close()
        thread.join(timeout=10)
