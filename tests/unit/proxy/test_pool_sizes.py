"""gunicorn's worker_connections and the connection pools to SageMaker and S3 are one number,
MLFLOW_PROXY_CONNECTIONS: a pool smaller than the calls in flight would have those beyond it open a
connection each and drop it (a TLS handshake to SageMaker every time), silently."""

import runpy

import botocore.session
import pytest

from mlflow_proxy import create_app
from mlflow_proxy.artifact_store import PART_SENDERS
from mlflow_proxy.config import DEFAULT_CONNECTIONS, load_config
from mlflow_proxy.credentials import SigningCredentials
from mlflow_proxy.forwarding import Upstream
from proxy_support import APP_DIR, TOKENS_JSON, TRACKING_ARN, WRITER

BASE = {
    "SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN,
    "MLFLOW_PROXY_TOKENS": TOKENS_JSON,
    "SM_MLFLOW_ENDPOINT_URL": "http://127.0.0.1:9",
}


def shipped_connections(monkeypatch, connections):
    """gunicorn.conf.py's worker_connections, read the way gunicorn reads it, under MLFLOW_PROXY_CONNECTIONS."""
    if connections is None:
        monkeypatch.delenv("MLFLOW_PROXY_CONNECTIONS", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_PROXY_CONNECTIONS", connections)
    return runpy.run_path(str(APP_DIR / "gunicorn.conf.py"))["worker_connections"]


@pytest.mark.parametrize("connections", [None, "8", "300"])
def test_the_upstream_pool_holds_a_connection_for_each_call(monkeypatch, connections):
    gunicorn_connections = shipped_connections(monkeypatch, connections)
    environ = {**BASE, **({"MLFLOW_PROXY_CONNECTIONS": connections} if connections else {})}
    config = load_config(environ)
    assert gunicorn_connections == config.connections == int(connections or DEFAULT_CONNECTIONS)

    pool = Upstream(config, credentials=object())._pool
    assert pool.pool.maxsize == gunicorn_connections


@pytest.mark.parametrize("connections", [None, "300"])
def test_the_s3_client_holds_a_connection_for_each_call(
    monkeypatch, aws_env, s3_endpoint, bucket, connections
):
    gunicorn_connections = shipped_connections(monkeypatch, connections)
    aws_env.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    made = {}
    real_create_client = SigningCredentials.create_client

    def create_client(self, service_name, config=None):
        made[service_name] = real_create_client(self, service_name, config)
        return made[service_name]

    monkeypatch.setattr(SigningCredentials, "create_client", create_client)
    environ = {**BASE, "MLFLOW_PROXY_ARTIFACT_STORE_URI": f"s3://{bucket}/store"}
    if connections:
        environ["MLFLOW_PROXY_CONNECTIONS"] = connections
    app = create_app(environ, session=botocore.session.get_session())

    # The client is made on first use, by the artifact calls' own code.
    listed = app.test_client().get("/api/2.0/mlflow-artifacts/artifacts", headers=WRITER)
    assert listed.status_code == 200, listed.get_data(as_text=True)
    # The calls in flight and the upload part senders (artifact_store.PART_SENDERS).
    assert made["s3"].meta.config.max_pool_connections == gunicorn_connections + PART_SENDERS
