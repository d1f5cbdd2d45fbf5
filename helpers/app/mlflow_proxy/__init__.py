"""A token-authenticated, SigV4-signing proxy from stock MLflow clients to SageMaker AI MLflow.

Served by gunicorn: `gunicorn -c gunicorn.conf.py 'mlflow_proxy:create_app()'`. Configuration
comes from the environment only; config.py documents every variable.
"""

import functools
import logging
import os
import sys
from typing import Mapping, Optional

import botocore.session
from flask import Flask, g, jsonify, request
from werkzeug.middleware.proxy_fix import ProxyFix

from mlflow_proxy import access_log, callers
from mlflow_proxy.access_log import Exchange, client_address
from mlflow_proxy.artifact_store import ArtifactStore, s3_client_config
from mlflow_proxy.artifacts import DOWNLOAD_HEADERS, register_artifact_routes
from mlflow_proxy.config import load_config
from mlflow_proxy.credentials import READ_ONLY_ROLE_SESSION_NAME, SigningCredentials
from mlflow_proxy.errors import register_error_handler
from mlflow_proxy.forwarding import Upstream
from mlflow_proxy.routes import (
    FORWARDED_PATHS,
    FORWARDED_PREFIXES,
    METHODS,
    SERVER_DOWNLOAD_RULES,
)
from mlflow_proxy.ui import PresignedUi, register_ui_route


def create_app(
    environ: Optional[Mapping[str, str]] = None,
    session: Optional[botocore.session.Session] = None,
) -> Flask:
    """Build the app; raises ConfigError, naming the variable, when the configuration is bad."""
    _log_to_stderr()
    config = load_config(os.environ if environ is None else environ)
    session = session or botocore.session.get_session()
    authenticator = callers.authenticator_for(config, session)
    credentials = SigningCredentials(session, config.region, config.role_arn)
    credentials.warm_up()
    read_only_credentials = credentials
    if config.read_only_role_arn is not None:
        read_only_credentials = SigningCredentials(
            session, config.region, config.read_only_role_arn, READ_ONLY_ROLE_SESSION_NAME
        )
        read_only_credentials.warm_up()
    upstream = Upstream(config, credentials, read_only_credentials)

    app = _Flask(__name__, static_folder=None)  # no /static route: we serve no files
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False  # forward the path as it came, don't redirect it
    # The ALB is the one proxy in front of us: trust its X-Forwarded-For, nothing further back.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)
    register_error_handler(app)

    @app.before_request
    def start_exchange():
        current = request._get_current_object()  # one context lookup, not one per attribute
        g.exchange = Exchange(
            client=client_address(current.environ), method=current.method, path=current.path
        )

    @app.after_request
    def finish_exchange(response):
        exchange = g.exchange
        exchange.status = response.status_code
        if not response.is_streamed:
            exchange.bytes_out = response.content_length or 0
        response.call_on_close(exchange.write)
        return response

    @app.get("/health")
    def health():
        # For the load balancer: answers without a token and without asking SageMaker.
        return jsonify(status="ok")

    def authenticate() -> callers.Caller:
        caller = authenticator.caller(request.headers.get("Authorization"))
        g.exchange.caller = caller.name
        return caller

    def authorize() -> callers.Caller:
        """The caller, if they may make this request; raises otherwise."""
        caller = authenticate()
        exchange = g.exchange  # the request's method and path, without two context lookups
        callers.authorize(caller, exchange.method, exchange.path)
        return caller

    def forward(rest=None):
        caller = authorize()
        # The request itself, not the context-local proxy to it, which forward() would go
        # through ~25 times: 1.5% of the instructions of a small call (benchmarks/RESULTS.md).
        return upstream.forward(request._get_current_object(), g.exchange, caller.read_only)

    def forward_download(**_):
        response = forward()
        response.headers.update(DOWNLOAD_HEADERS)
        return response

    if config.artifact_location is not None:
        # Registered before the catch-all forwarding rules, and more specific than them.
        store = ArtifactStore(
            config.artifact_location,
            lambda: credentials.create_client("s3", config=s3_client_config(config.connections)),
            max_upload_bytes=config.max_artifact_bytes,
        )
        register_artifact_routes(app, store, authorize, config.artifact_redirect_seconds)
    register_ui_route(
        app, PresignedUi(config, lambda: credentials.create_client("sagemaker")), authenticate
    )

    forwarded_rules = [f"{prefix}<path:rest>" for prefix in FORWARDED_PREFIXES]
    for rule in forwarded_rules + list(FORWARDED_PATHS):
        app.add_url_rule(
            rule,
            endpoint=f"forward {rule}",
            view_func=forward,
            methods=METHODS,
            provide_automatic_options=False,  # OPTIONS goes upstream like any other method
        )
    for rule in SERVER_DOWNLOAD_RULES:
        app.add_url_rule(
            rule,
            endpoint=f"forward download {rule}",
            view_func=forward_download,
            methods=METHODS,
            provide_automatic_options=False,
        )
    return app


class _Flask(Flask):
    """Flask, asking once per function, not on every call, whether a view, hook or handler is a
    coroutine function: Flask's check (inspect.iscoroutinefunction, for the view and for each
    hook of every request) was 0.6% of a small call's instructions. Bounded, for functions made
    per request (after_this_request)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ensure_sync = functools.lru_cache(maxsize=256)(super().ensure_sync)


class _LineFormatter(logging.Formatter):
    """Access lines are bare JSON objects, so that CloudWatch Logs Insights discovers their
    fields with no parse pattern; every other line gets its time, level and logger name."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == access_log.logger.name:
            return record.getMessage()
        return super().format(record)


def _log_to_stderr() -> None:
    """Our log lines go to stderr (the proxy's log file on the instances) whoever runs the app."""
    logger = logging.getLogger("mlflow_proxy")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LineFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
