"""gunicorn's gevent worker with deadlines on the caller's side, and MLflow JSON for requests
gunicorn cannot parse. gunicorn.conf.py names it as worker_class (and monkey-patches first).

One greenlet per connection, not one OS thread per call: hundreds of calls waiting on SageMaker
cost no thread each and no hand-offs of the GIL between them (benchmarks/RESULTS.md, "Serving").
gunicorn reads the request line, the headers and the body on the caller's socket with no bound
of its own; a caller that stops half-way would hold its connection, and its slot among
`worker_connections`, for as long as it keeps it open. Here every read from the caller is
bounded (config.CallerDeadlines, docs/security.md):

- a kept-alive connection may wait for its next request's first byte for gunicorn's `keepalive`;
  from that byte on, the request line and headers must all have arrived within `header_seconds`
  (a total, so a caller trickling a byte at a time gains nothing);
- each read of the body must bring bytes within `body_read_seconds`.

A head that misses its deadline is answered here, 408 DEADLINE_EXCEEDED; a body read that misses
it raises TimeoutError in the app (request_body.py), which answers 408 and forwards or stores
nothing. Writes to the caller are not bounded here (gunicorn's `timeout` kills a worker that
stops notifying the master).

gunicorn answers a request it cannot parse (bad request line, header or chunk) with an HTML page
and logs the exception's text, which quotes the bytes received: header values, body bytes.
Here such a request gets MLflow JSON and a log line naming only the kind of error. A request
line longer than `limit_request_line` (gunicorn.conf.py) is a 400 INVALID_PARAMETER_VALUE, as
MLflow answers a query it will not take, with what to do instead.
"""

import contextlib
import http
import json
import os
import select
import socket
import time
from typing import Optional

import gevent
from gevent import monkey
from gevent.local import local
from gunicorn import util
from gunicorn.http import errors as parse_errors
from gunicorn.workers import ggevent
from gunicorn.workers.ggevent import GeventWorker
from urllib3.util import wait

from mlflow_proxy.access_log import Exchange
from mlflow_proxy.config import CallerDeadlines, load_caller_deadlines, load_connections

# The most of a body the app left unread that is read off the connection to keep it alive; a
# longer one closes the connection instead.
DRAIN_BYTES = 1024 * 1024
# On SIGTERM, how long a kept-alive connection may still bring a request already on its way before
# it is closed; requests in flight get graceful_timeout (gunicorn's gthread lingers as long).
STOP_KEEPALIVE_LINGER = 2.0
# After a refusal, how long the caller's remaining bytes are read off before the connection closes.
LINGER_SECONDS = 1.0


_POLL = monkey.get_original("select", "poll")


def _wait_for_socket(sock, read=False, write=False, timeout=None):
    """urllib3's wait, except that a zero timeout polls for real instead of through gevent.

    urllib3 checks that a pooled connection is still open (`wait_for_read(sock, 0)`) before each
    call; gevent's poll answers even that by a turn of its loop, so the call waited behind every
    other call ready to run: 5 ms at p50 with 8 callers and a 25 ms upstream, 0.84x the threads'
    throughput (benchmarks/RESULTS.md, "Serving"). A zero timeout never blocks, so the real poll
    costs the loop nothing."""
    if timeout != 0:
        return wait.poll_wait_for_socket(sock, read, write, timeout)
    poller = _POLL()
    poller.register(sock, (select.POLLIN if read else 0) | (select.POLLOUT if write else 0))
    return bool(poller.poll(0))


# Before the app is built (gunicorn imports this worker class before preload_app).
wait.wait_for_socket = _wait_for_socket


# New connections a worker accepts per turn of its loop. gunicorn's gevent worker sets 1 when
# there are several workers, so that one does not take a whole burst; but a turn of a busy loop
# lasts as long as its ready calls take, and a burst of 256 connections then waited seconds to
# be accepted: after 5 s, 105-111 of them were (p99 7-9 s, /health probes failing at 5 s), all
# of them with 16, split 112/144 and 144/113 between the two workers (benchmarks/RESULTS.md,
# "Serving"). gevent's own default is 100.
ACCEPTS_PER_TURN = 16


class _AcceptingServer(ggevent.StreamServer):
    # gunicorn assigns max_accept after building the server; this keeps ours.
    max_accept = property(lambda self: ACCEPTS_PER_TURN, lambda self, value: None)


class HeadTimeout(Exception):
    """The caller did not send its request line and headers in time."""


class _DeadlineSocket:
    """The caller's socket as gunicorn's parser reads it: each recv() bounded by the deadline of
    what is being read. Everything else is the socket's own."""

    def __init__(self, sock, deadlines: CallerDeadlines, idle_seconds: float, idle: set):
        self._sock = sock
        self._deadlines = deadlines
        self._idle_seconds = idle_seconds
        self._idle = idle  # the worker's greenlets waiting for a next request
        self._reading_head = False
        self._head_deadline: Optional[float] = None  # monotonic; set by the head's first byte

    def __getattr__(self, name):
        return getattr(self._sock, name)

    @property
    def raw(self):
        return self._sock

    @contextlib.contextmanager
    def reading_head(self):
        self._reading_head, self._head_deadline = True, None
        try:
            yield
        finally:
            self._reading_head = False

    def recv(self, size, *flags):
        # Waiting: a kept-alive connection, its next request's first byte not yet here.
        waiting = self._reading_head and self._head_deadline is None
        if not self._reading_head:
            limit = self._deadlines.body_read_seconds
        elif waiting:
            limit = self._idle_seconds
            self._idle.add(gevent.getcurrent())
        else:
            limit = self._head_deadline - time.monotonic()
            if limit <= 0:
                raise HeadTimeout()
        self._sock.settimeout(limit)
        try:
            data = self._sock.recv(size, *flags)
        except TimeoutError:
            if not self._reading_head:
                raise
            if waiting:
                raise parse_errors.NoMoreData() from None  # idle too long: closed quietly
            raise HeadTimeout() from None
        finally:
            self._sock.settimeout(None)
            if waiting:
                self._idle.discard(gevent.getcurrent())
        if waiting and data:
            self._head_deadline = time.monotonic() + self._deadlines.header_seconds
        return data


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


class DeadlineWorker(GeventWorker):
    """gevent, HTTP/1.1 over plain TCP only (the load balancer terminates TLS)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.cfg.is_ssl or self.cfg.http_protocols != ["h1"] or self.cfg.http2_cleartext != "off":
            raise RuntimeError("DeadlineWorker serves HTTP/1.1 without TLS only.")
        pooled = load_connections(os.environ)
        if self.worker_connections > pooled:
            # --worker-connections or GUNICORN_CMD_ARGS above the pools' size: the extra calls
            # would each open a connection to SageMaker and drop it.
            raise RuntimeError(
                f"gunicorn serves {self.worker_connections} connections per worker but the "
                f"connection pools hold {pooled}: set "
                f"MLFLOW_PROXY_CONNECTIONS={self.worker_connections} instead."
            )
        self.deadlines = load_caller_deadlines(os.environ)
        self._connection = local()  # the current greenlet's _DeadlineSocket
        self._idle: set = set()

    def run(self):
        # gunicorn's run() builds its servers from the module's StreamServer: ours, in this worker.
        ggevent.StreamServer = _AcceptingServer
        super().run()

    def handle(self, listener, client, addr):
        client.setblocking(1)
        self._connection.socket = _DeadlineSocket(
            client, self.deadlines, self.cfg.keepalive, self._idle
        )
        super().handle(listener, self._connection.socket, addr)

    def handle_exit(self, sig, frame):
        # gevent's worker would wait graceful_timeout for idle kept-alive connections too.
        super().handle_exit(sig, frame)
        gevent.spawn_later(STOP_KEEPALIVE_LINGER, self._close_idle)

    def _close_idle(self):
        for waiting in list(self._idle):
            waiting.kill(parse_errors.NoMoreData(), block=False)  # closed quietly

    def timeout_ctx(self):
        # gunicorn reads each request's head within this; gevent's own is a keepalive timeout.
        return self._connection.socket.reading_head()

    def handle_request(self, listener_name, req, sock, addr):
        keepalive = super().handle_request(listener_name, req, sock, addr)
        # Read what the app left of the body now, not while the next request is parsed: a
        # malformed rest would then be answered a second time, after the answer gone out.
        try:
            drained = 0
            while drained <= DRAIN_BYTES:
                data = req.body.read(64 * 1024)
                if not data:
                    return keepalive
                drained += len(data)
        except (parse_errors.ParseException, parse_errors.NoMoreData, OSError):
            pass
        raise StopIteration()  # gunicorn closes the connection

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
            _linger(client.raw if isinstance(client, _DeadlineSocket) else client)
        except OSError:
            pass  # the caller is gone


def _linger(sock) -> None:
    """Half-close after a refusal, then read off what the caller still sends, for a moment: a
    close with unread bytes makes the kernel reset the connection, which can destroy the answer
    before the caller has read it (a caller still trickling its head, say)."""
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(LINGER_SECONDS)
    deadline = time.monotonic() + LINGER_SECONDS
    try:
        while time.monotonic() < deadline and sock.recv(64 * 1024):
            pass
    except (TimeoutError, OSError):
        pass
