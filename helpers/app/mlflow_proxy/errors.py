"""Errors the proxy itself answers with, as MLflow-shaped JSON from one handler.

The MLflow client parses {"error_code", "message"} and maps known codes to its exceptions; an
unknown code only earns a warning, so every code here is one of MLflow's own (databricks.proto).
Upstream errors never come through here: they are streamed back untouched.
"""

import logging

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)


class ProxyError(Exception):
    status = 500
    error_code = "INTERNAL_ERROR"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Unauthenticated(ProxyError):
    status = 401
    error_code = "UNAUTHENTICATED"


class PermissionDenied(ProxyError):
    status = 403
    error_code = "PERMISSION_DENIED"


class EndpointNotFound(ProxyError):
    status = 404
    error_code = "ENDPOINT_NOT_FOUND"


class ResourceNotFound(ProxyError):
    status = 404
    error_code = "RESOURCE_DOES_NOT_EXIST"


class InvalidRequest(ProxyError):
    status = 400
    error_code = "INVALID_PARAMETER_VALUE"


class MalformedRequest(ProxyError):
    """The request cannot be read as HTTP: a body cut short or badly chunked, a bad header."""

    status = 400
    error_code = "MALFORMED_REQUEST"


class RequestTimeout(ProxyError):
    """The caller stalled while sending its request (config.CallerDeadlines)."""

    status = 408
    error_code = "DEADLINE_EXCEEDED"


class BodyTooLarge(ProxyError):
    status = 413
    error_code = "RESOURCE_LIMIT_EXCEEDED"


class UpstreamUnreachable(ProxyError):
    # 502 with TEMPORARILY_UNAVAILABLE rather than a "BAD_GATEWAY" of our own: the client retries
    # 502/503/504 with backoff whatever the body says, and then raises an MlflowException whose
    # error_code it recognises (an unknown code only logs a warning and degrades to
    # INTERNAL_ERROR), so users see a transient failure, which is what a refused connection is.
    status = 502
    error_code = "TEMPORARILY_UNAVAILABLE"


class AwsRefused(ProxyError):
    """S3 or SageMaker's control plane refused the proxy's role: a missing permission, a KMS key
    it may not use, a resource that is gone. Not transient; the log has AWS's whole answer."""

    status = 502
    error_code = "INTERNAL_ERROR"


class UpstreamMalformed(ProxyError):
    """The upstream answered with a response that is not valid HTTP (obs-fold, a header line
    without a colon, control characters): relaying it could desynchronise the caller."""

    status = 502
    error_code = "INTERNAL_ERROR"


class CredentialsUnavailable(ProxyError):
    status = 503
    error_code = "TEMPORARILY_UNAVAILABLE"


class IssuerUnavailable(ProxyError):
    """An OIDC issuer's signing keys cannot be fetched and none are cached: fail closed."""

    status = 503
    error_code = "TEMPORARILY_UNAVAILABLE"


class UpstreamTimeout(ProxyError):
    status = 504
    error_code = "DEADLINE_EXCEEDED"


_HTTP_ERROR_CODES = {404: "ENDPOINT_NOT_FOUND", 405: "ENDPOINT_NOT_FOUND"}

BASIC_REALM = 'Basic realm="MLflow", charset="UTF-8"'


def mlflow_error(status: int, error_code: str, message: str):
    response = jsonify(error_code=error_code, message=message)
    response.status_code = status
    if status == 401:
        # Basic, so that a browser prompts; the MLflow client sends its token either way.
        response.headers["WWW-Authenticate"] = BASIC_REALM
    return response


def register_error_handler(app: Flask) -> None:
    @app.errorhandler(Exception)
    def handle(error: Exception):
        if isinstance(error, ProxyError):
            status, code, message = error.status, error.error_code, error.message
        elif isinstance(error, HTTPException):
            # Raised by Flask's routing: a path or method outside the MLflow REST API.
            status, code = error.code, _HTTP_ERROR_CODES.get(error.code, "BAD_REQUEST")
            message = f"{request.method} {request.path}: {error.description}"
        else:
            logger.exception("Unexpected error")
            status, code, message = 500, "INTERNAL_ERROR", "The proxy failed; see its log."
        exchange = g.get("exchange")
        if exchange is not None:
            exchange.error = f"{code}: {message}"
        return mlflow_error(status, code, message)
