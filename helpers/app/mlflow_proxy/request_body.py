"""The caller's request body: read whole, or refused.

A WSGI server ends `wsgi.input` quietly when the caller hangs up: gunicorn hands out a body
shorter than its Content-Length as if it were all of it, and a chunked body that breaks off or is
malformed raises the server's own parse errors, whose text quotes the bytes received. Every
reader of a body in the proxy (forwarding, artifact uploads, the multipart requests) reads it
through CallerBody, so that a truncated body is never forwarded or stored (the caller gets 400
MALFORMED_REQUEST, or 408 when it stalled) and no body byte reaches a message or a log.
"""

from typing import Iterator

from flask import Request

from mlflow_proxy.access_log import Exchange
from mlflow_proxy.errors import MalformedRequest, RequestTimeout

CHUNK_BYTES = 64 * 1024


class CallerBody:
    """A file-like `read(size)` over the request body that counts it into the exchange."""

    def __init__(self, request: Request, exchange: Exchange):
        self._stream = request.stream
        self._declared = request.content_length  # None: chunked
        self._exchange = exchange
        self._received = 0

    def read(self, size: int = CHUNK_BYTES) -> bytes:
        try:
            chunk = self._stream.read(size)
        except TimeoutError:  # the server's per-read deadline (gunicorn_worker.py)
            raise RequestTimeout(
                f"The request body stalled after {self._received} bytes "
                "(MLFLOW_PROXY_BODY_READ_TIMEOUT_SECONDS)."
            ) from None
        # Any server's read error (gunicorn's NoMoreData, InvalidChunkSize, ..., a reset): its
        # text may quote body bytes, so only its kind is kept.
        except Exception as error:  # noqa: BLE001
            raise MalformedRequest(
                f"The request body broke off or is malformed after {self._received} bytes "
                f"({type(error).__name__})."
            ) from None
        self._received += len(chunk)
        self._exchange.bytes_in = self._received
        if not chunk and self._declared is not None and self._received < self._declared:
            raise MalformedRequest(
                f"The request body ended after {self._received} of the {self._declared} bytes "
                "its Content-Length announced."
            )
        return chunk

    def chunks(self, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The body, chunk by chunk, to its verified end."""
        return iter(lambda: self.read(size), b"")


def has_no_body(request: Request) -> bool:
    """Whether the request's framing says it has no body (RFC 9112 section 6.3): no
    Transfer-Encoding, and no Content-Length or one of 0. The server then hands the app an
    empty wsgi.input: there is nothing to read."""
    return not request.content_length and "Transfer-Encoding" not in request.headers
