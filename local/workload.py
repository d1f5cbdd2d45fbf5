"""A short MLflow client workload: what a training script and a model registry user do.

Names carry spaces and non-ASCII characters on purpose: they travel in query strings
(experiments/get-by-name, metrics/get-history), where signing them wrongly gets a 403.
"""

import tempfile
import time
import uuid
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

METRIC_KEY = "validation loss é"


class WorkloadError(RuntimeError):
    """MLflow answered, but not what it should have."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise WorkloadError(what)


@dataclass(frozen=True)
class WorkloadResult:
    experiment_name: str
    experiment_id: str
    run_id: str
    model_name: str
    model_version: str
    alias: str


def run_workload(client: MlflowClient, say=print) -> WorkloadResult:
    suffix = uuid.uuid4().hex[:8]
    experiment_name = f"stand-in demo {suffix} – café"
    experiment_id = client.create_experiment(experiment_name, tags={"purpose": "demo"})
    found = client.get_experiment_by_name(experiment_name)
    expect(found is not None and found.experiment_id == experiment_id, f"by name: {found}")
    say(f"created experiment {experiment_name!r} (id {experiment_id}) and found it by name")

    run = client.create_run(experiment_id, run_name="first run")
    run_id = run.info.run_id
    client.log_param(run_id, "learning rate", "0.01")
    now_ms = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(METRIC_KEY, 1.0 / (step + 1), now_ms, step) for step in range(10)],
        params=[Param("optimizer", "adam")],
    )
    client.set_tag(run_id, "stage", "demo")
    client.set_terminated(run_id)
    history = client.get_metric_history(run_id, METRIC_KEY)
    expect(len(history) == 10, f"metric history: {history}")
    say(f"run {run_id}: 2 params, {len(history)} values of {METRIC_KEY!r}, finished")

    runs = client.search_runs([experiment_id], filter_string="params.optimizer = 'adam'")
    expect([found_run.info.run_id for found_run in runs] == [run_id], f"search_runs: {runs}")
    say("search_runs with a filter string found the run")

    # No AWS credentials here: artifacts go through the proxy (run.info.artifact_uri is an
    # mlflow-artifacts:/ URI; SageMaker's MLflow stores s3:// for it).
    note = "trained through the proxy"
    client.log_text(run_id, note, "notes/readme.txt")
    assert [f.path for f in client.list_artifacts(run_id, "notes")] == ["notes/readme.txt"]
    with tempfile.TemporaryDirectory() as scratch:
        back = client.download_artifacts(run_id, "notes/readme.txt", scratch)
        assert open(back).read() == note
    say(f"logged, listed and downloaded an artifact of {run.info.artifact_uri}")

    model_name = f"stand-in model {suffix}"
    client.create_registered_model(model_name, description="registered through the proxy")
    version = client.create_model_version(
        model_name, source=f"{run.info.artifact_uri}/model", run_id=run_id
    )
    alias = "champion"
    client.set_registered_model_alias(model_name, alias, version.version)
    by_alias = client.get_model_version_by_alias(model_name, alias)
    expect(by_alias.version == version.version, f"by alias: {by_alias}")
    say(f"registered model {model_name!r} version {version.version} with alias {alias!r}")

    return WorkloadResult(
        experiment_name, experiment_id, run_id, model_name, str(version.version), alias
    )
