"""Forwarding one request upstream: bound and hash the body, sign, stream the answer back.

Modelled on werkzeug's ProxyMiddleware (hop-by-hop header removal, streaming in chunks), with the
body spooled first because SigV4 needs its hash before the first byte is sent. When the proxy
serves the artifact store, JSON bodies have their artifact URIs mapped on the way
(artifact_uris.py): requests before they are hashed, responses as they stream back.
"""

import hashlib
import io
import logging
import re
import tempfile
import time
from typing import IO, Callable, Iterable, Iterator, Optional
from urllib.parse import quote

import urllib3
from flask import Request, Response
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
)
from werkzeug.http import is_hop_by_hop_header

from mlflow_proxy import iam_actions, signing
from mlflow_proxy.access_log import Exchange
from mlflow_proxy.artifact_uris import UriMapping, is_json
from mlflow_proxy.config import Config
from mlflow_proxy.credentials import SigningCredentials
from mlflow_proxy.errors import (
    BodyTooLarge,
    InvalidRequest,
    UpstreamMalformed,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from mlflow_proxy.request_body import CallerBody, has_no_body

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
# The most of an answer its caller left unread that is read off the upstream connection to keep it.
_DRAIN_BYTES = 64 * 1024
# Bodies up to this size stay in memory while hashed; bigger ones go to a temporary file.
IN_MEMORY_BODY_BYTES = 1024 * 1024
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
# Response headers gunicorn writes itself; passing SageMaker's too would send them twice.
_SET_BY_OUR_SERVER = frozenset({"date", "server"})
_METHOD_OVERRIDES = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})


# Request headers the caller may not pass upstream (_is_ours_to_replace), in lower case.
_REPLACED = frozenset(
    {"authorization", "host", "content-length", "expect", "forwarded"}
    | _METHOD_OVERRIDES
    | set(signing.ROUTING_HEADERS.values())
)


def _is_ours_to_replace(name: str) -> bool:
    """Request headers the caller may not pass upstream.

    Authorization is the caller's token; Host, Content-Length and the x-amz-* headers belong to
    the signed request we build; the routing header is set from configuration, never by the
    caller; X-Forwarded-* describe the hop to us, not the one to SageMaker. Method overrides
    would let a read-only caller's GET act as a write wherever a server honours them.
    """
    name = name.lower()
    return name in _REPLACED or name.startswith(("x-amz-", "x-forwarded-"))


def _end_to_end(headers) -> list[tuple[str, str]]:
    """Headers without the hop-by-hop ones, including any the Connection header names.

    Proxy-Connection is not in werkzeug's list: it is the non-standard Connection of old
    clients, hop-by-hop wherever it appears (RFC 9110 section 7.6.1).
    """
    named_by_connection = {
        token.strip().lower() for token in headers.get("Connection", "").split(",") if token.strip()
    }
    named_by_connection.add("proxy-connection")
    return [
        (name, value)
        for name, value in headers.items()
        if not is_hop_by_hop_header(name) and name.lower() not in named_by_connection
    ]


# RFC 9110 section 5.1 and 5.5: a token, and visible characters, spaces and tabs (no obs-fold).
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def _malformed_header(upstream: urllib3.BaseHTTPResponse) -> Optional[str]:
    """Why the upstream's header section is not valid HTTP, or None.

    http.client parses it leniently: a line without a colon ends the headers silently (the
    lines after it, Content-Length and Transfer-Encoding among them, are lost, and with them the
    framing), an obs-folded line is joined with its CRLF. Only the original response's parse
    defects tell the first; urllib3 merely logs them.
    """
    original = getattr(upstream, "_original_response", None)
    if original is not None and original.msg.defects:
        return type(original.msg.defects[0]).__name__
    for name, value in upstream.headers.items():
        if not _FIELD_NAME.fullmatch(name):
            return "a header name that is not a token"
        if not _FIELD_VALUE.fullmatch(value):
            return f"a control character or line folding in {name}"
    return None


class Upstream:
    """SageMaker's MLflow endpoint, as configured: one connection pool per process."""

    def __init__(
        self,
        config: Config,
        credentials: SigningCredentials,
        read_only_credentials: Optional[SigningCredentials] = None,
    ):
        self._config = config
        self._credentials = credentials
        # Read-only callers' requests are signed with these, so that IAM refuses what our
        # allow-list let through by mistake (docs/security-iam.md).
        self._read_only_credentials = read_only_credentials or credentials
        self._service = signing.SERVICE_NAMES[config.mode]
        self._routing_header = signing.ROUTING_HEADERS[config.mode]
        self._host = signing.host_header(config.endpoint_url)
        # Made once: urllib3 would build a Retry from `retries=False, redirect=False` per call.
        # The MLflow client retries, with backoff; retrying here would double it.
        self._no_retries = urllib3.Retry(total=False, redirect=False)
        self._timeout = urllib3.Timeout(
            connect=config.connect_timeout_seconds, read=config.read_timeout_seconds
        )
        # Created before gunicorn forks its workers, while it holds no connection: each worker
        # ends up with its own pool. One pool for the one endpoint, given the request target
        # only: a PoolManager parses every full URL again to pick its pool, 8% of the
        # instructions a small call costs in the app (benchmarks/RESULTS.md). A connection for
        # each of the worker's calls in flight: none opens one of its own (config.load_connections).
        self._pool = urllib3.connection_from_url(
            config.endpoint_url, maxsize=config.connections, block=False
        )
        self._base_path = urllib3.util.parse_url(config.endpoint_url).path or ""
        self._uri_mapping = (
            UriMapping(config.artifact_location) if config.artifact_location else None
        )

    def forward(self, request: Request, exchange: Exchange, read_only: bool = False) -> Response:
        path = self._path_and_query(request)
        url = self._config.endpoint_url + path  # what is signed
        target = self._base_path + path  # what is sent, to the pool's host
        mapping = self._uri_mapping
        limit = self._config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _too_large(limit)
        if has_no_body(request):
            # Nothing to read, count, hash or keep: 2.3% of a small call's instructions.
            body, length, body_sha256 = io.BytesIO(), 0, _EMPTY_SHA256
        else:
            body, length, body_sha256 = _spool_body(
                CallerBody(request, exchange).chunks(CHUNK_BYTES),
                limit,
                mapping.to_upstream(request.path)
                if mapping and is_json(request.content_type)
                else None,
            )
        try:
            headers = {
                name: value
                for name, value in _end_to_end(request.headers)
                if not _is_ours_to_replace(name)
            }
            headers["Host"] = self._host
            headers[self._routing_header] = self._config.resource_arn
            if mapping:
                # Plain bytes back, so that the URIs in them can be mapped as they stream.
                headers["Accept-Encoding"] = "identity"
            if length or request.method in _METHODS_WITH_BODY:
                headers["Content-Length"] = str(length)
            signed_headers = signing.sign(
                request.method,
                url,
                headers,
                body_sha256,
                self._signing_credentials(request, read_only).current(),
                self._service,
                self._config.region,
            )
            started = time.monotonic()
            upstream = self._send(
                request.method, target, body if length else None, signed_headers
            )
            exchange.upstream_seconds = time.monotonic() - started
        finally:
            body.close()
        malformed = _malformed_header(upstream)
        if malformed:
            upstream.close()  # its framing is unknown: the connection cannot be reused
            upstream.release_conn()
            raise UpstreamMalformed(f"The MLflow endpoint answered with {malformed}.")
        rewrite = None
        dropped = _SET_BY_OUR_SERVER
        if "Transfer-Encoding" in upstream.headers:
            # RFC 9112 section 6.3: Transfer-Encoding overrides Content-Length, and an
            # intermediary must remove the Content-Length before relaying what it decoded.
            dropped = dropped | {"content-length"}
        if (
            mapping
            and is_json(upstream.headers.get("Content-Type"))
            and upstream.headers.get("Content-Encoding", "identity") == "identity"
        ):
            rewrite = mapping.to_caller(request.path)
            dropped = dropped | {"content-length"}  # the mapping changes the length
        relay = _Relay(upstream, exchange, rewrite)
        relay.start()
        response = Response(
            relay,
            status=upstream.status,
            headers=[
                (name, value)
                for name, value in _end_to_end(upstream.headers)
                if name.lower() not in dropped
            ],
        )
        if "Content-Type" not in upstream.headers:
            # Flask supplies a default; a response that came without one leaves without one.
            del response.headers["Content-Type"]
        return response

    def _signing_credentials(self, request: Request, read_only: bool) -> SigningCredentials:
        """A read-only caller's call is signed with the read-only role where IAM names an action
        for it (mlflow_proxy/iam_actions.py), so that SageMaker refuses a write our allow-list let
        through. The reads IAM names none for (GraphQL, v3 trace reads, ...) would be refused to
        that role, whatever SageMaker checks for them: for those the allow-list is the one check
        (docs/security-iam.md)."""
        if read_only and iam_actions.action_for(request.method, request.path) is not None:
            return self._read_only_credentials
        return self._credentials

    def _path_and_query(self, request: Request) -> str:
        if any(segment in (".", "..") for segment in request.path.split("/")):
            raise InvalidRequest("Paths with '.' or '..' segments are not forwarded.")
        path = quote(request.path, safe="/")
        if request.query_string:
            try:
                path += "?" + signing.canonical_query(request.query_string.decode())
            except UnicodeDecodeError:
                raise InvalidRequest("The query string is not valid UTF-8.") from None
        return path

    def _send(self, method: str, target: str, body: Optional[IO[bytes]], headers: dict):
        try:
            return self._pool.urlopen(
                method,
                target,
                body=body,
                headers=headers,
                timeout=self._timeout,
                retries=self._no_retries,
                redirect=False,
                preload_content=False,
                decode_content=False,
            )
        except NewConnectionError as error:  # before ConnectTimeoutError: it is a subclass
            raise UpstreamUnreachable(f"Cannot connect to the MLflow endpoint: {error}") from error
        except (ConnectTimeoutError, ReadTimeoutError) as error:
            raise UpstreamTimeout(f"The MLflow endpoint did not answer in time: {error}") from error
        except HTTPError as error:
            raise UpstreamUnreachable(f"The MLflow endpoint failed: {error}") from error


Rewrite = Callable[[Iterable[bytes]], Iterator[bytes]]


def _spool_body(
    chunks: Iterator[bytes], limit: int, rewrite: Optional[Rewrite] = None
) -> tuple[IO[bytes], int, str]:
    """Read the body once (rewritten, if asked): count it against the limit, hash it, keep it
    for sending. Nothing is sent before the whole body has arrived (request_body.py)."""
    spool = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BODY_BYTES)
    digest = hashlib.sha256()
    length = 0
    try:
        # Chunked bodies have no Content-Length: the limit is enforced while reading.
        for chunk in rewrite(chunks) if rewrite else chunks:
            length += len(chunk)
            if length > limit:
                raise _too_large(limit)
            digest.update(chunk)
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, length, digest.hexdigest()


def _too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(
        f"The request body is larger than {limit} bytes (MLFLOW_PROXY_MAX_BODY_BYTES)."
    )


class _Relay:
    """The upstream body as it came, chunk by chunk: never whole, never decompressed.

    werkzeug calls close() when the response is done, also when it never iterated (HEAD) or the
    client went away mid-stream; only a connection read to the end goes back to the pool.
    """

    def __init__(
        self, upstream: urllib3.BaseHTTPResponse, exchange: Exchange, rewrite: Optional[Rewrite]
    ):
        self._upstream = upstream
        self._exchange = exchange
        self._rewrite = rewrite
        self._completed = False
        self._chunks: Iterator[bytes] = iter(())
        self._first: Optional[bytes] = None

    def start(self) -> None:
        """Read the first chunk now, while a break can still be answered with MLflow JSON.

        gunicorn sends the status line together with the first chunk of the body: an upstream
        that breaks off before it would otherwise leave as gunicorn's own HTML 500 page.
        """
        self._chunks = self._relayed()
        try:
            self._first = next(self._chunks, None)
        except ReadTimeoutError as error:
            self.close()
            raise UpstreamTimeout(f"The MLflow endpoint did not answer in time: {error}") from error
        except HTTPError as error:
            self.close()
            raise UpstreamUnreachable(
                f"The MLflow endpoint broke off its response: {error}"
            ) from error

    def __iter__(self) -> Iterator[bytes]:
        if self._first is not None:
            yield self._first
        yield from self._chunks

    def _relayed(self) -> Iterator[bytes]:
        chunks = self._upstream.stream(CHUNK_BYTES, decode_content=False)
        try:
            for chunk in self._rewrite(chunks) if self._rewrite else chunks:
                self._exchange.bytes_out += len(chunk)
                yield chunk
        except HTTPError as error:
            # Past the first chunk the status has gone out: all we can do is break the
            # connection (the server does, on this exception) so the client cannot take the body
            # as complete.
            logger.warning(
                "Upstream response broke off after %d bytes: %s", self._exchange.bytes_out, error
            )
            raise
        self._completed = True

    def close(self) -> None:
        if not self._completed:
            remaining = self._upstream.length_remaining
            if remaining is not None and remaining <= _DRAIN_BYTES:
                # The caller left before the end of a small answer (a client that timed out):
                # read the rest, so that the connection goes back to the pool, not a new TLS
                # handshake for the next call.
                try:
                    self._upstream.drain_conn()
                except HTTPError:
                    self._upstream.close()
            else:
                # Unread bytes would corrupt the next request on this connection: drop it.
                self._upstream.close()
        self._upstream.release_conn()
