"""The stock MLflow client with an OIDC ID token as MLFLOW_TRACKING_TOKEN: what a CI job with
no stored secret does, through proxy -> SageMaker stand-in -> mlflow server, in both modes."""

import uuid

import pytest
from mlflow.exceptions import MlflowException

pytestmark = pytest.mark.slow


def test_a_ci_job_logs_a_run_with_its_oidc_token(client_for, stand_in):
    client = client_for(stand_in.oidc_token())
    experiment_id = client.create_experiment(f"keyless {uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "accuracy", 0.75)
    client.log_text(run.info.run_id, "through the proxy", "notes.txt")
    client.set_terminated(run.info.run_id)

    assert client.get_run(run.info.run_id).data.metrics == {"accuracy": 0.75}
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["notes.txt"]
    log = stand_in.log_path("proxy").read_text()
    assert "github:demo-org/demo-repo@refs/heads/main" in log


def test_another_branch_may_read_but_not_write(client_for, stand_in):
    writer = client_for(stand_in.token)
    experiment_id = writer.create_experiment(f"read only {uuid.uuid4().hex[:8]}")
    reader = client_for(stand_in.oidc_token(ref="refs/heads/feature"))
    assert reader.get_experiment(experiment_id).experiment_id == experiment_id
    with pytest.raises(MlflowException) as refused:
        reader.create_run(experiment_id)
    assert refused.value.error_code == "PERMISSION_DENIED"


def test_an_oidc_token_of_another_repository_is_refused(client_for, stand_in):
    client = client_for(stand_in.oidc_token(repository="someone-else/repo"))
    with pytest.raises(MlflowException) as refused:
        client.search_experiments()
    assert refused.value.error_code == "PERMISSION_DENIED"
