"""Read-only enforced twice: a read-only caller's write that gets past the proxy's allow-list is
still refused by IAM, because the proxy signs read-only callers' requests with the read-only role
(the emulator evaluates its policy as IAM would on a tracking server)."""

import os
from pathlib import Path

import pytest
import requests
from mlflow.exceptions import MlflowException

from local.stand_in import PROXY_APP_DIR, StandIn

pytestmark = pytest.mark.slow

PROXY_APPS = Path(__file__).parent / "proxy_apps"


@pytest.fixture(scope="module")
def stand_in():
    with StandIn(
        "tracking",
        assume_role=True,
        proxy_app="allow_list_broken:create_app()",
        proxy_env={"PYTHONPATH": os.pathsep.join([str(PROXY_APP_DIR), str(PROXY_APPS)])},
    ) as running:
        yield running


def test_a_write_past_the_allow_list_is_refused_by_iam(client_for, stand_in):
    reader = client_for(stand_in.read_only_token)
    assert any(experiment.name == "Default" for experiment in reader.search_experiments())

    with pytest.raises(MlflowException) as raised:
        reader.create_experiment("slipped past the allow-list")
    # AWS's error passes through as it came (403, {"message"}): the client shows its message.
    assert (
        "User: arn:aws:sts::123456789012:assumed-role/mlflow-proxy-stand-in-read-only/"
        "mlflow-proxy-read-only is not authorized to perform: sagemaker-mlflow:CreateExperiment"
    ) in str(raised.value)

    writer = client_for(stand_in.token)
    assert writer.get_experiment_by_name("slipped past the allow-list") is None


def test_the_refusal_is_awss_403_access_denied(stand_in):
    response = requests.post(
        stand_in.proxy_url + "/api/2.0/mlflow/runs/create",
        json={"experiment_id": "0"},
        headers={"Authorization": f"Bearer {stand_in.read_only_token}"},
        timeout=60,
    )
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert "sagemaker-mlflow:CreateRun" in response.json()["message"]


def test_read_write_callers_are_unaffected(client_for, stand_in):
    writer = client_for(stand_in.token)
    experiment_id = writer.create_experiment("written by a read-write caller")
    run = writer.create_run(experiment_id)
    writer.log_metric(run.info.run_id, "loss", 0.5)
    reader = client_for(stand_in.read_only_token)
    assert reader.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
