"""One local stand-in per mode (mlflow server <- SageMaker emulator <- proxy), shared by the
integration tests, and MLflow clients pointed at its proxy with a token."""

import pytest
from mlflow import MlflowClient

from local.stand_in import StandIn

# Small enough to test 413 cheaply, large enough for a log_batch of 1000 metrics (~100 KB).
MAX_BODY_BYTES = 1024 * 1024


@pytest.fixture(scope="session", params=["tracking", "serverless"])
def stand_in(request):
    # The proxy assumes a role through the emulated STS, as it does on the instances.
    with StandIn(
        request.param,
        assume_role=True,
        proxy_env={"MLFLOW_PROXY_MAX_BODY_BYTES": str(MAX_BODY_BYTES)},
    ) as running:
        yield running


@pytest.fixture
def client_for(stand_in, monkeypatch):
    """A real MlflowClient through the proxy, presenting the given token (or none)."""
    # The client retries 5xx with backoff for minutes; these tests want the first answer.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stand_in.proxy_url)

    def make(token):
        if token is None:
            monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
        else:
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
        return MlflowClient(tracking_uri=stand_in.proxy_url)

    return make


@pytest.fixture
def client(client_for, stand_in):
    return client_for(stand_in.token)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, show the end of each part's log: the stand-in's work directory is removed."""
    outcome = yield
    report = outcome.get_result()
    running = item.funcargs.get("stand_in") if hasattr(item, "funcargs") else None
    if report.failed and running is not None and running.processes:
        for part in running.PARTS:
            report.sections.append((f"stand-in {part} log", running.log_tail(part, lines=60)))
