"""A token-authenticated, SigV4-signing proxy from stock MLflow clients to SageMaker AI MLflow.

Served by gunicorn: `gunicorn -c gunicorn.conf.py 'mlflow_proxy:create_app()'`. Configuration
comes from the environment only; config.py documents every variable.
"""

import logging
import os
import sys
from typing import Mapping, Optional

import botocore.session
from flask import Flask, g, jsonify, request
from werkzeug.middleware.proxy_fix import ProxyFix

from mlflow_proxy import callers
from mlflow_proxy.access_log import Exchange
from mlflow_proxy.artifact_store import S3_CLIENT_CONFIG, ArtifactStore
from mlflow_proxy.artifacts import register_artifact_routes
from mlflow_proxy.config import load_config
from mlflow_proxy.credentials import SigningCredentials
from mlflow_proxy.errors import register_error_handler
from mlflow_proxy.forwarding import MLFLOW_PREFIXES, Upstream
from mlflow_proxy.ui import PresignedUi, register_ui_route

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


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
    upstream = Upstream(config, credentials)

    app = Flask(__name__, static_folder=None)  # no /static route: we serve no files
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False  # forward the path as it came, don't redirect it
    # The ALB is the one proxy in front of us: trust its X-Forwarded-For, nothing further back.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)
    register_error_handler(app)

    @app.before_request
    def start_exchange():
        g.exchange = Exchange(
            client=request.remote_addr or "-", method=request.method, path=request.path
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
        callers.authorize(caller, request.method, request.path)
        return caller

    def forward(rest):
        authorize()
        # The request itself, not the context-local proxy to it, which forward() would go
        # through ~25 times: 1.5% of the instructions of a small call (benchmarks/RESULTS.md).
        return upstream.forward(request._get_current_object(), g.exchange)

    if config.artifact_location is not None:
        # Registered before the catch-all forwarding rules, and more specific than them.
        store = ArtifactStore(
            config.artifact_location,
            lambda: credentials.create_client("s3", config=S3_CLIENT_CONFIG),
            max_upload_bytes=config.max_artifact_bytes,
        )
        register_artifact_routes(app, store, authorize)
    register_ui_route(
        app, PresignedUi(config, lambda: credentials.create_client("sagemaker")), authenticate
    )

    for prefix in MLFLOW_PREFIXES:
        app.add_url_rule(
            f"{prefix}<path:rest>",
            endpoint=f"forward {prefix}",
            view_func=forward,
            methods=METHODS,
            provide_automatic_options=False,  # OPTIONS goes upstream like any other method
        )
    return app


def _log_to_stderr() -> None:
    """Our log lines go to stderr (journald on the instances) whoever runs the app."""
    logger = logging.getLogger("mlflow_proxy")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
