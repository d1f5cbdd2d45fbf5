"""Helpers for the proxy's unit tests: a recording upstream and the proxy, both on loopback.

The upstream stands where SageMaker would be: it records what arrives on the wire and answers
what the test tells it to. The proxy is the real app under werkzeug's threaded server; the
gunicorn test runs it the way the instances do.
"""

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

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

    def _access(self) -> list[str]:
        return [line for line in self.lines if line.startswith("client=")]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
