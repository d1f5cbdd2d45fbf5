"""A pytest plugin that points MLflow's own REST-level tests at the stand-in, plain or proxied.

MLflow's tests (tests/tracking/test_rest_tracking.py, test_model_registry.py) are not part of this
repository; docs/mlflow3.md ("MLflow's own REST tests through the proxy") says how to get them and
run them with this plugin (`pytest -p local.mlflow_rest_adapter ...`). Their own `mlflow_client`
or `client` fixture (a local server per test) has to be taken out of the test module, so that
these take its place:

REST_TARGET=plain  the stand-in's own `mlflow server` (SQLite, --no-serve-artifacts, s3:// root in
                   the local S3); the client gets the S3 key, as a client with AWS access would.
REST_TARGET=proxy  the stand-in's proxy (-> SageMaker emulator -> the same mlflow server), with
                   only the URL and MLFLOW_TRACKING_TOKEN; the tests' raw `requests` calls to the
                   proxy carry the token as `Authorization: Bearer`, as a non-Python client would.
STAND_IN_MODE      tracking (default) or serverless.
FRESH_SERVER=1     restart the mlflow server on an empty database before each test, as MLflow's
                   own fixture does (slow: one server start per test); otherwise one server serves
                   the session and tests that expect an empty server fail against both targets.

The two helpers the tests import from MLflow's test tree are here too, for a tree without them.
"""

import contextlib
import os
import shutil

import pytest
import requests
from click.testing import CliRunner
from mlflow import MlflowClient

from local import fixed_credentials
from local.stand_in import NO_AWS_FILES, S3_KEY, StandIn

TARGET = os.environ.get("REST_TARGET", "plain")
MODE = os.environ.get("STAND_IN_MODE", "tracking")


@pytest.fixture(scope="session")
def stand_in():
    with StandIn(MODE, assume_role=True) as running:
        yield running


@pytest.fixture
def mlflow_client(stand_in, monkeypatch):
    if os.environ.get("FRESH_SERVER") == "1":
        # The database as the server left it after its first start (migrated, only "Default"),
        # copied back before each test: the restart skips the migrations.
        database, empty = stand_in.workdir / "mlflow.db", stand_in.workdir / "empty.db"
        stand_in.kill("mlflow")
        if not empty.exists():
            shutil.copyfile(database, empty)
        shutil.copyfile(empty, database)
        stand_in.start("mlflow")
    for name in list(os.environ):
        if name.startswith(("AWS_", "MLFLOW_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    for name, value in NO_AWS_FILES.items():
        monkeypatch.setenv(name, value)
    if TARGET == "plain":
        tracking_uri = stand_in.mlflow_url
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", stand_in.s3_url)
        monkeypatch.setenv("AWS_DEFAULT_REGION", fixed_credentials.REGION)
        for name, value in S3_KEY.items():
            monkeypatch.setenv(name, value)
    else:
        tracking_uri = stand_in.proxy_url
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", stand_in.token)
        send = requests.Session.request

        def with_token(self, method, url, *args, **kwargs):
            if str(url).startswith(stand_in.proxy_url) and not kwargs.get("auth"):
                headers = dict(kwargs.pop("headers", None) or {})
                headers.setdefault("Authorization", f"Bearer {stand_in.token}")
                kwargs["headers"] = headers
            return send(self, method, url, *args, **kwargs)

        monkeypatch.setattr(requests.Session, "request", with_token)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    yield MlflowClient(tracking_uri)
    mlflow.set_tracking_uri(None)


@pytest.fixture
def client(mlflow_client):
    """test_model_registry.py's name for the same client."""
    return mlflow_client


def pytest_configure(config):
    config.addinivalue_line("markers", "allow_infer_pip_requirements_fallback")


# The helpers MLflow's tests import (tests.integration.utils, tests.tracking.integration_test_utils).


def invoke_cli_runner(*args, **kwargs):
    result = CliRunner().invoke(*args, **kwargs)
    assert result.exit_code == 0, f"CLI failed: {result.output} {result.exception!r}"
    return result


@contextlib.contextmanager
def _init_server(*args, **kwargs):
    pytest.skip("starts a server of its own (server internals), not the target's")
    yield


def _send_rest_tracking_post_request(tracking_server_uri, api_path, json_payload, auth=None):
    return requests.post(f"{tracking_server_uri}{api_path}", json=json_payload, auth=auth)
