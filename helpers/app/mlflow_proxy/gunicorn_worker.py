"""gunicorn's gthread worker with deadlines on the caller's side, and MLflow JSON for requests
gunicorn cannot parse. gunicorn.conf.py names it as worker_class.

gunicorn 27's gthread worker waits for a new connection's first byte without holding a thread
(5 s in a thread, then in its poller), but then reads the request line, the headers and the
body on a blocking socket with no timeout: a caller that stops half-way holds a thread for as
long as it keeps its connection open, and a few such callers starve /health. Here every read
from the caller is bounded (config.CallerDeadlines, docs/security.md):

- the request line and headers must all have arrived `header_seconds` after the request began
  (a total, so a caller trickling a byte at a time gains nothing);
- each read of the body must bring bytes within `body_read_seconds`.

A head that misses its deadline is answered here, 408 DEADLINE_EXCEEDED; a body read that misses
it raises TimeoutError in the app (request_body.py), which answers 408 and forwards or stores
nothing. Writes to the caller keep gunicorn's blocking socket.

gunicorn answers a request it cannot parse (bad request line, header or chunk) with an HTML page
and logs the exception's text, which quotes the bytes received: header values, body bytes.
Here such a request gets MLflow JSON and a log line naming only the kind of error. A request
line longer than `limit_request_line` (gunicorn.conf.py) is a 400 INVALID_PARAMETER_VALUE, as
MLflow answers a query it will not take, with what to do instead.
"""

import http
import json
import os
import time
from typing import Optional

from gunicorn import util
from gunicorn.http import errors as parse_errors
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import ThreadWorker

from mlflow_proxy.access_log import Exchange
from mlflow_proxy.config import CallerDeadlines, load_caller_deadlines, load_threads
from mlflow_proxy.thread_pool import LastIdleFirstPool


class HeadTimeout(Exception):
    """The caller did not send its request line and headers in time."""


class _DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, each recv() bounded by the deadline of what is being read."""

    def __init__(self, sock, deadlines: CallerDeadlines):
        super().__init__(sock)
        self._deadlines = deadlines
        self.head_deadline: Optional[float] = None  # monotonic; None while a body is read

    def chunk(self, size_hint=None):
        if self.head_deadline is None:
            limit = self._deadlines.body_read_seconds
        else:
            limit = self.head_deadline - time.monotonic()
            if limit <= 0:
                raise TimeoutError("request head deadline passed")
        prior = self.sock.gettimeout()
        if prior is not None:
            # gunicorn bounds its drain of an unread body itself: keep the tighter bound.
            limit = min(limit, prior)
        self.sock.settimeout(limit)
        try:
            return super().chunk(size_hint)
        finally:
            self.sock.settimeout(prior)


class _DeadlineParser(RequestParser):
    """gunicorn's HTTP/1.1 parser on a _DeadlineUnreader: one per connection, one head
    deadline per request on it."""

    def __init__(self, cfg, sock, client, deadlines: CallerDeadlines):
        super().__init__(cfg, sock, client)
        self.unreader = _DeadlineUnreader(sock, deadlines)
        self._header_seconds = deadlines.header_seconds

    def __next__(self):
        self.unreader.head_deadline = time.monotonic() + self._header_seconds
        try:
            return super().__next__()
        except TimeoutError:
            raise HeadTimeout() from None
        finally:
            self.unreader.head_deadline = None


# Status and MLflow error code of what the caller got wrong; every other parse error is a 400.
_REFUSALS = {
    HeadTimeout: (408, "DEADLINE_EXCEEDED"),
    parse_errors.LimitRequestLine: (400, "INVALID_PARAMETER_VALUE"),
    parse_errors.LimitRequestHeaders: (431, "RESOURCE_LIMIT_EXCEEDED"),
    parse_errors.ExpectationFailed: (417, "MALFORMED_REQUEST"),
}
# Not the caller's doing: gunicorn's own 500 (and traceback) stands.
_OURS = (
    parse_errors.InvalidResponseHeader,
    parse_errors.InvalidResponseHeaderName,
    parse_errors.ConfigurationProblem,
)


def refusal(error: Exception, limit_request_line: int) -> Optional[tuple[int, str, str]]:
    """(status, error code, message) for a request gunicorn could not read, or None."""
    if isinstance(error, _OURS):
        return None
    if not isinstance(error, (parse_errors.ParseException, HeadTimeout)):
        return None
    kind = type(error)
    status, code = next(
        (answer for cls, answer in _REFUSALS.items() if isinstance(error, cls)),
        (400, "MALFORMED_REQUEST"),
    )
    if kind is HeadTimeout:
        message = (
            "The request line and headers did not arrive in time "
            "(MLFLOW_PROXY_HEADER_TIMEOUT_SECONDS)."
        )
    elif kind is parse_errors.LimitRequestLine:
        message = (
            f"The request line is longer than {limit_request_line} bytes: "
            "send fewer or shorter query parameters (or a POST with a JSON body)."
        )
    else:
        # The kind only: gunicorn's text quotes what was received.
        message = f"The request is not valid HTTP/1.1 ({kind.__name__})."
    return status, code, message


def mlflow_error_bytes(status: int, error_code: str, message: str) -> bytes:
    body = json.dumps({"error_code": error_code, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class DeadlineWorker(ThreadWorker):
    """gthread, HTTP/1.1 over plain TCP only (the load balancer terminates TLS)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.cfg.is_ssl or self.cfg.http_protocols != ["h1"] or self.cfg.http2_cleartext != "off":
            raise RuntimeError("DeadlineWorker serves HTTP/1.1 without TLS only.")
        pooled = load_threads(os.environ)
        if self.cfg.threads > pooled:
            # --threads or GUNICORN_CMD_ARGS above the pools' size: the extra calls would each
            # open a connection to SageMaker and drop it.
            raise RuntimeError(
                f"gunicorn runs {self.cfg.threads} threads per worker but the connection pools "
                f"hold {pooled}: set MLFLOW_PROXY_THREADS={self.cfg.threads} instead."
            )
        self.deadlines = load_caller_deadlines(os.environ)

    def get_thread_pool(self):
        # gthread's hook for its pool: threads started as needed, the warm ones reused.
        return LastIdleFirstPool(self.cfg.threads)

    def handle(self, conn):
        if conn.parser is None:
            # gthread makes its parser in conn.init() only when there is none yet.
            conn.parser = _DeadlineParser(self.cfg, conn.sock, conn.client, self.deadlines)
        return super().handle(conn)

    def _keepalive_after(self, conn, keepalive):
        # gunicorn drains a body the app did not read; if that body is malformed, the answer has
        # already gone out and the connection can only be closed, not answered a second time.
        try:
            return super()._keepalive_after(conn, keepalive)
        except (parse_errors.ParseException, parse_errors.NoMoreData):
            return False

    def handle_error(self, req, client, addr, exc):
        refused = refusal(exc, self.cfg.limit_request_line)
        if refused is None:
            return super().handle_error(req, client, addr, exc)
        status, code, message = refused
        req = req or getattr(exc, "req", None)  # what gunicorn had parsed of it, for the log
        peer = addr[0] if addr else "-"
        self.log.warning("Refused a request from %s: %s", peer, message)
        exchange = Exchange(
            client=peer,
            method=getattr(req, "method", None) or "-",
            path=getattr(req, "path", None) or "-",
            status=status,
            error=f"{code}: {message}",
        )
        exchange.write()
        try:
            util.write(client, mlflow_error_bytes(status, code, message))
        except OSError:
            pass  # the caller is gone
