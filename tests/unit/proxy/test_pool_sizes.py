"""gunicorn's threads and the connection pools to SageMaker and S3 are one number,
MLFLOW_PROXY_THREADS: a pool smaller than the threads would have the calls beyond it open a
connection each and drop it (a TLS handshake to SageMaker every time), silently."""

import runpy

import botocore.session
import pytest

from mlflow_proxy import create_app
from mlflow_proxy.artifact_store import PART_SENDERS
from mlflow_proxy.config import DEFAULT_THREADS, load_config
from mlflow_proxy.credentials import SigningCredentials
from mlflow_proxy.forwarding import Upstream
from proxy_support import APP_DIR, TOKENS_JSON, TRACKING_ARN, WRITER

BASE = {
    "SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN,
    "MLFLOW_PROXY_TOKENS": TOKENS_JSON,
    "SM_MLFLOW_ENDPOINT_URL": "http://127.0.0.1:9",
}


def shipped_threads(monkeypatch, threads):
    """gunicorn.conf.py's threads, read the way gunicorn reads it, under MLFLOW_PROXY_THREADS."""
    if threads is None:
        monkeypatch.delenv("MLFLOW_PROXY_THREADS", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_PROXY_THREADS", threads)
    return runpy.run_path(str(APP_DIR / "gunicorn.conf.py"))["threads"]


@pytest.mark.parametrize("threads", [None, "8", "300"])
def test_the_upstream_pool_holds_a_connection_for_each_thread(monkeypatch, threads):
    gunicorn_threads = shipped_threads(monkeypatch, threads)
    environ = {**BASE, **({"MLFLOW_PROXY_THREADS": threads} if threads else {})}
    config = load_config(environ)
    assert gunicorn_threads == config.threads == int(threads or DEFAULT_THREADS)

    pool = Upstream(config, credentials=object())._pool
    assert pool.pool.maxsize == gunicorn_threads


@pytest.mark.parametrize("threads", [None, "300"])
def test_the_s3_client_holds_a_connection_for_each_thread(
    monkeypatch, aws_env, s3_endpoint, bucket, threads
):
    gunicorn_threads = shipped_threads(monkeypatch, threads)
    aws_env.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    made = {}
    real_create_client = SigningCredentials.create_client

    def create_client(self, service_name, config=None):
        made[service_name] = real_create_client(self, service_name, config)
        return made[service_name]

    monkeypatch.setattr(SigningCredentials, "create_client", create_client)
    environ = {**BASE, "MLFLOW_PROXY_ARTIFACT_STORE_URI": f"s3://{bucket}/store"}
    if threads:
        environ["MLFLOW_PROXY_THREADS"] = threads
    app = create_app(environ, session=botocore.session.get_session())

    # The client is made on first use, by the artifact calls' own code.
    listed = app.test_client().get("/api/2.0/mlflow-artifacts/artifacts", headers=WRITER)
    assert listed.status_code == 200, listed.get_data(as_text=True)
    # The request threads and the upload part senders (artifact_store.PART_SENDERS).
    assert made["s3"].meta.config.max_pool_connections == gunicorn_threads + PART_SENDERS
