"""The stock MLflow client, through proxy -> SageMaker stand-in -> mlflow server, in both modes."""

import time
import uuid

import pytest
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

pytestmark = pytest.mark.slow


def unique(prefix):
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def test_experiment_name_with_spaces_and_non_ascii_is_found_by_name(client):
    # get-by-name is a GET: the spaces travel in the query string ('+' from the client).
    name = unique("résumé + spaces / ünïcode ✓")
    experiment_id = client.create_experiment(name)

    found = client.get_experiment_by_name(name)

    assert found is not None
    assert found.experiment_id == experiment_id
    assert found.name == name


def test_metric_history_of_a_key_with_spaces_and_non_ascii(client):
    run = client.create_run(client.create_experiment(unique("history")))
    key = "validation loss é/ß 1"
    for step, value in enumerate([0.9, 0.5, 0.25]):
        client.log_metric(run.info.run_id, key, value, step=step)

    history = client.get_metric_history(run.info.run_id, key)

    assert [(metric.step, metric.value) for metric in history] == [(0, 0.9), (1, 0.5), (2, 0.25)]


def test_log_batch_of_1000_metrics(client):
    run = client.create_run(client.create_experiment(unique("batch")))
    now_ms = int(time.time() * 1000)
    metrics = [
        Metric(f"metric {index % 10}", float(index), now_ms, index // 10) for index in range(1000)
    ]

    client.log_batch(run.info.run_id, metrics=metrics)

    logged = client.get_run(run.info.run_id).data.metrics
    assert logged == {f"metric {key}": float(990 + key) for key in range(10)}
    assert len(client.get_metric_history(run.info.run_id, "metric 3")) == 100


def test_search_runs_with_a_filter_string(client):
    experiment_id = client.create_experiment(unique("search"))
    runs = {}
    for rate in ("0.1", "0.01", "0.001"):
        run = client.create_run(experiment_id)
        client.log_param(run.info.run_id, "learning rate", rate)
        client.log_metric(run.info.run_id, "accuracy", float(rate) * 10)
        runs[rate] = run.info.run_id

    found = client.search_runs(
        [experiment_id], filter_string="metrics.accuracy > 0.05 and params.`learning rate` != '0.1'"
    )

    assert [run.info.run_id for run in found] == [runs["0.01"]]


def test_registered_model_alias_and_model_version_search(client):
    run = client.create_run(client.create_experiment(unique("registry")))
    name = unique("modèle à étiquette")
    client.create_registered_model(name)
    first = client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)
    second = client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)

    client.set_registered_model_alias(name, "champion", first.version)

    assert client.get_model_version_by_alias(name, "champion").version == first.version
    versions = client.search_model_versions(f"name = '{name}'")
    assert sorted(int(version.version) for version in versions) == sorted(
        [int(first.version), int(second.version)]
    )
    assert client.get_registered_model(name).aliases == {"champion": first.version}


def test_missing_run_surfaces_resource_does_not_exist(client):
    with pytest.raises(MlflowException) as raised:
        client.get_run("0" * 32)

    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert raised.value.get_http_status_code() == 404
