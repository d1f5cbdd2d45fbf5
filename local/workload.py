"""A short MLflow client workload: what a training script and a model registry user do.

Names carry spaces and non-ASCII characters on purpose: they travel in query strings
(experiments/get-by-name, metrics/get-history), where signing them wrongly gets a 403.

`python -m local.workload` runs it all (runs, registry, artifacts, a logged model loaded back, a
trace found with its spans) with the client of whichever virtualenv runs it, against
MLFLOW_TRACKING_URI with MLFLOW_TRACKING_TOKEN: the client-version matrix
(tests/integration/test_client_versions.py) runs it with MLflow 2 and 3 clients. Only APIs that
MLflow 2.22 and 3.x both have are used.
"""

import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.pyfunc import PythonModel

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


class AddOne(PythonModel):
    def predict(self, context, model_input, params=None):
        return [value + 1 for value in model_input["x"]]


def log_and_load_a_model(experiment_id: str, say=print) -> str:
    """Log a pyfunc model through the proxy, load it back by its URI and predict with it."""
    import pandas

    with mlflow.start_run(experiment_id=experiment_id, run_name="model run"):
        # MLflow 3 names a model (a LoggedModel, models:/<model_id>); MLflow 2 gives its path.
        where = {"name": "model"} if _major() >= 3 else {"artifact_path": "model"}
        # Requirements given: inferring them would run pip, which needs no proxy to test.
        info = mlflow.pyfunc.log_model(
            python_model=AddOne(), pip_requirements=["mlflow"], **where
        )
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    predicted = list(loaded.predict(pandas.DataFrame({"x": [1, 2]})))
    expect(predicted == [2, 3], f"prediction of {info.model_uri}: {predicted}")
    if _major() >= 3:
        found = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")
        expect(info.model_id in [model.model_id for model in found], f"logged models: {found}")
    say(f"logged {info.model_uri}, loaded it back and predicted {predicted}")
    return info.model_uri


def trace_and_find_it(experiment_id: str, say=print) -> str:
    """One trace of two spans; found again by search, with every span."""
    mlflow.set_experiment(experiment_id=experiment_id)

    @mlflow.trace(name="answer")
    def answer(question):
        with mlflow.start_span(name="retrieve") as span:
            span.set_inputs({"question": question})
            span.set_outputs({"documents": 2})
        return "42"

    expect(answer("why?") == "42", "the traced function's answer")
    client = MlflowClient()
    traces = client.search_traces(experiment_ids=[experiment_id])
    expect(len(traces) == 1, f"search_traces: {traces}")
    trace_id = getattr(traces[0].info, "trace_id", None) or traces[0].info.request_id
    trace = client.get_trace(trace_id)
    names = sorted(span.name for span in trace.data.spans)
    expect(names == ["answer", "retrieve"], f"spans of {trace_id}: {names}")
    say(f"trace {trace_id} found by search, with its spans {names}")
    return trace_id


def _major() -> int:
    return int(mlflow.__version__.split(".")[0])


def main() -> int:
    client = MlflowClient()
    result = run_workload(client)
    model_uri = log_and_load_a_model(result.experiment_id)
    trace_id = trace_and_find_it(result.experiment_id)
    summary = {"mlflow": mlflow.__version__, **asdict(result), "model_uri": model_uri}
    print(json.dumps({**summary, "trace_id": trace_id}))
    return 0


if __name__ == "__main__":
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        sys.exit("Set MLFLOW_TRACKING_URI (the proxy) and MLFLOW_TRACKING_TOKEN first.")
    sys.exit(main())
