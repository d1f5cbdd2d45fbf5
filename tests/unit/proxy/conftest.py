"""Fixtures for the proxy's unit tests (helpers in proxy_support.py)."""

import logging
import uuid

import botocore.session
import pytest

from mlflow_proxy import create_app
from proxy_support import (
    ACCESS_KEY,
    SECRET_KEY,
    TOKENS_JSON,
    TRACKING_ARN,
    CapturedLog,
    FakeUpstream,
    Gunicorn,
    moto_server,
    s3_client,
    serve_in_thread,
)


@pytest.fixture
def aws_env(monkeypatch):
    """Static credentials for the default chain, and nothing from the machine's AWS files."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


@pytest.fixture
def upstream():
    fake = FakeUpstream()
    fake.url, stop = serve_in_thread(fake)
    yield fake
    stop()


@pytest.fixture
def proxy_env(upstream):
    """Proxy configuration pointing at the fake upstream; tests adjust it before `proxy()`."""
    return {
        "SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN,
        "SM_MLFLOW_ENDPOINT_URL": upstream.url,
        "MLFLOW_PROXY_TOKENS": TOKENS_JSON,
    }


@pytest.fixture
def start_proxy(aws_env):
    """Returns start(environ) -> base URL of the proxy app served on loopback."""
    stops = []

    def start(environ: dict) -> str:
        app = create_app(environ, session=botocore.session.get_session())
        url, stop = serve_in_thread(app)
        stops.append(stop)
        return url

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def proxy(start_proxy, proxy_env):
    return start_proxy(proxy_env)


@pytest.fixture
def run_gunicorn():
    """run(environ, *gunicorn options) -> a Gunicorn serving the proxy; stopped after the test."""
    started = []

    def run(environ, *options):
        server = Gunicorn(environ, *options)
        started.append(server)
        return server

    yield run
    for server in started:
        server.stop()


@pytest.fixture
def proxy_log():
    """Everything the proxy logs (it logs under 'mlflow_proxy', which does not propagate)."""
    handler = CapturedLog()
    logger = logging.getLogger("mlflow_proxy")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture(scope="session")
def s3_endpoint():
    with moto_server() as url:
        yield url


@pytest.fixture
def s3(s3_endpoint):
    return s3_client(s3_endpoint)


@pytest.fixture
def bucket(s3):
    """A new, empty bucket for each test."""
    name = f"artifacts-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name
