"""32 MLflow clients log metrics through the proxy for a minute; none of them is lost."""

import threading
import time

import pytest
from mlflow.tracking import MlflowClient

CLIENTS = 32
LOAD_SECONDS = 60


@pytest.mark.slow
def test_32_clients_logging_for_a_minute_lose_no_metric(stand_in, monkeypatch, report):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", stand_in.token)
    # The client retries 5xx by itself; with retries an error would be hidden (or a metric
    # written twice), so every failure must surface here.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    through_proxy = MlflowClient(tracking_uri=stand_in.proxy_url)
    experiment_id = through_proxy.create_experiment("sustained-load")
    run_ids = [through_proxy.create_run(experiment_id).info.run_id for _ in range(CLIENTS)]
    sent = [0] * CLIENTS
    errors: list = []
    start = threading.Barrier(CLIENTS)

    def log_until_deadline(index: int, deadline: float) -> None:
        client = MlflowClient(tracking_uri=stand_in.proxy_url)
        start.wait()
        while time.monotonic() < deadline:
            step = sent[index]
            try:
                client.log_metric(run_ids[index], "loss", value=step / 7, step=step)
            except Exception as error:  # noqa: BLE001 - every kind of failure is counted
                errors.append(f"client {index}, step {step}: {error!r}")
                return
            sent[index] += 1

    deadline = time.monotonic() + LOAD_SECONDS
    clients = [
        threading.Thread(target=log_until_deadline, args=(index, deadline))
        for index in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join()

    assert errors == []
    # Read back from MLflow itself, not through what is under test.
    from_mlflow = MlflowClient(tracking_uri=stand_in.mlflow_url)
    stored = {
        run_id: sorted(
            (metric.step, metric.value) for metric in from_mlflow.get_metric_history(run_id, "loss")
        )
        for run_id in run_ids
    }
    for index, run_id in enumerate(run_ids):
        assert stored[run_id] == [(step, step / 7) for step in range(sent[index])], run_id
    assert min(sent) > 0  # every client took part
    total = sum(sent)
    report(
        f"sustained load: {CLIENTS} clients logged {total} metrics in {LOAD_SECONDS} s "
        f"({total / LOAD_SECONDS:.0f}/s), all {total} found in MLflow, 0 errors"
    )
