"""The proxy when SageMaker goes away and comes back, and how often it asks STS for credentials."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from local import fixed_credentials
from local.stand_in import StandIn

pytestmark = pytest.mark.slow


def test_upstream_down_is_502_json_and_the_proxy_recovers(stand_in, client):
    experiment_id = client.create_experiment("survives an outage")
    headers = {"Authorization": f"Bearer {stand_in.token}"}
    get_experiment = (
        f"{stand_in.proxy_url}/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}"
    )

    stand_in.kill("emulator")
    try:
        response = requests.get(get_experiment, headers=headers, timeout=60)
        assert response.status_code == 502, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    finally:
        stand_in.start("emulator")

    # Same port, credentials issued before the outage still valid: the next call just works.
    assert client.get_experiment(experiment_id).name == "survives an outage"


def test_sts_is_called_once_not_per_request(stand_in, client):
    # A fresh proxy has an empty credentials cache; count the emulator's AssumeRole calls
    # from its start on (it resolves them at start-up), whatever the other tests did before.
    calls_before = stand_in.stats()["assume_role_calls_by_role"]
    stand_in.kill("proxy")
    stand_in.start("proxy")

    experiment_id = client.create_experiment("counts STS calls")
    run_id = client.create_run(experiment_id).info.run_id
    for step in range(50):
        client.log_metric(run_id, "step metric", float(step), step=step)
    assert len(client.get_metric_history(run_id, "step metric")) == 50

    # Once for each role: the one it signs with, and the read-only callers' one.
    calls = stand_in.stats()["assume_role_calls_by_role"]
    assert {role: calls[role] - calls_before.get(role, 0) for role in calls} == ONE_CALL_PER_ROLE


ONE_CALL_PER_ROLE = {fixed_credentials.ROLE_ARN: 1, fixed_credentials.READ_ONLY_ROLE_ARN: 1}


def test_gunicorn_workers_share_the_credentials_resolved_before_they_fork():
    # The instances run gunicorn.conf.py's worker count; each worker assuming the role on its
    # own would show here as one AssumeRole call per worker.
    with StandIn("serverless", assume_role=True, proxy_workers=2) as stand_in:
        headers = {"Authorization": f"Bearer {stand_in.token}"}
        url = f"{stand_in.proxy_url}/api/2.0/mlflow/experiments/get?experiment_id=0"

        def ask(_):
            # A new connection each time, so the requests spread over both workers.
            return requests.get(url, headers=headers, timeout=60).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(ask, range(40)))
        assert statuses == [200] * 40
        assert stand_in.stats()["assume_role_calls_by_role"] == ONE_CALL_PER_ROLE
