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
ARTIFACT_PATH = "notes/readme.txt"


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


class Workload:
    """The steps, in order, each returning the line that says what it did; later steps use what
    earlier ones created. `label` starts every name the workload creates. The demo runs them
    all (run_workload); `python -m smoke` runs them one by one against a deployed stack, timing
    each, adds log_trace, then clean_up."""

    def __init__(self, client: MlflowClient, label: str = "stand-in demo"):
        self.client = client
        suffix = uuid.uuid4().hex[:8]
        self.experiment_name = f"{label} {suffix} – café"
        self.model_name = f"{label} model {suffix}"
        self.alias = "champion"
        self.experiment_id: str | None = None
        self.run = None
        self.model_version: str | None = None
        self.trace_id: str | None = None

    def steps(self) -> list:
        return [
            self.create_experiment,
            self.log_run,
            self.search_runs,
            self.artifact_round_trip,
            self.register_model,
        ]

    def create_experiment(self) -> str:
        self.experiment_id = self.client.create_experiment(
            self.experiment_name, tags={"purpose": "demo"}
        )
        found = self.client.get_experiment_by_name(self.experiment_name)
        expect(found is not None and found.experiment_id == self.experiment_id, f"by name: {found}")
        return (
            f"created experiment {self.experiment_name!r} (id {self.experiment_id}) and found it "
            "by name"
        )

    def log_run(self) -> str:
        self.run = self.client.create_run(self.experiment_id, run_name="first run")
        run_id = self.run.info.run_id
        self.client.log_param(run_id, "learning rate", "0.01")
        now_ms = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(METRIC_KEY, 1.0 / (step + 1), now_ms, step) for step in range(10)],
            params=[Param("optimizer", "adam")],
        )
        self.client.set_tag(run_id, "stage", "demo")
        self.client.set_terminated(run_id)
        history = self.client.get_metric_history(run_id, METRIC_KEY)
        expect(len(history) == 10, f"metric history: {history}")
        return f"run {run_id}: 2 params, {len(history)} values of {METRIC_KEY!r}, finished"

    def search_runs(self) -> str:
        runs = self.client.search_runs(
            [self.experiment_id], filter_string="params.optimizer = 'adam'"
        )
        found = [found_run.info.run_id for found_run in runs]
        expect(found == [self.run.info.run_id], f"search_runs: {runs}")
        return "search_runs with a filter string found the run"

    def artifact_round_trip(self) -> str:
        # No AWS credentials here: artifacts go through the proxy (run.info.artifact_uri is an
        # mlflow-artifacts:/ URI; SageMaker's MLflow stores s3:// for it).
        run_id = self.run.info.run_id
        note = "trained through the proxy"
        self.client.log_text(run_id, note, ARTIFACT_PATH)
        listed = [f.path for f in self.client.list_artifacts(run_id, "notes")]
        expect(listed == [ARTIFACT_PATH], f"list_artifacts: {listed}")
        with tempfile.TemporaryDirectory() as scratch:
            back = self.client.download_artifacts(run_id, ARTIFACT_PATH, scratch)
            with open(back) as downloaded:
                expect(downloaded.read() == note, "the downloaded artifact differs")
        return f"logged, listed and downloaded an artifact of {self.run.info.artifact_uri}"

    def register_model(self) -> str:
        self.client.create_registered_model(
            self.model_name, description="registered through the proxy"
        )
        version = self.client.create_model_version(
            self.model_name, source=f"{self.run.info.artifact_uri}/model", run_id=self.run.info.run_id
        )
        self.model_version = str(version.version)
        self.client.set_registered_model_alias(self.model_name, self.alias, version.version)
        by_alias = self.client.get_model_version_by_alias(self.model_name, self.alias)
        expect(by_alias.version == version.version, f"by alias: {by_alias}")
        return (
            f"registered model {self.model_name!r} version {version.version} with alias "
            f"{self.alias!r}"
        )

    def log_trace(self) -> str:
        """A trace in the experiment, found again by search with every span."""
        mlflow.set_tracking_uri(self.client.tracking_uri)
        said = []
        self.trace_id = trace_and_find_it(self.experiment_id, say=said.append)
        return said[0]

    def clean_up(self) -> str:
        """Delete what the steps created: model, artifacts, run, experiment (MLflow keeps a
        deleted experiment's name reserved until it is purged)."""
        done = []
        if self.model_version is not None:
            self.client.delete_registered_model(self.model_name)
            done.append(f"model {self.model_name!r}")
        if self.trace_id is not None:
            self.client.delete_traces(self.experiment_id, trace_ids=[self.trace_id])
            done.append("the trace")
        if self.run is not None:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            # The directory the steps wrote: the proxy refuses a path ending in "/", which is
            # what delete_artifacts() of the run's whole root would send.
            repository = get_artifact_repository(self.run.info.artifact_uri)
            repository.delete_artifacts(ARTIFACT_PATH.split("/")[0])
            self.client.delete_run(self.run.info.run_id)
            done.append("the run and its artifacts")
        if self.experiment_id is not None:
            self.client.delete_experiment(self.experiment_id)
            done.append(f"experiment {self.experiment_name!r}")
        return "deleted " + (", ".join(done) or "nothing (no step created anything)")

    def result(self) -> WorkloadResult:
        return WorkloadResult(
            self.experiment_name,
            self.experiment_id,
            self.run.info.run_id,
            self.model_name,
            self.model_version,
            self.alias,
        )


def run_workload(client: MlflowClient, say=print) -> WorkloadResult:
    workload = Workload(client)
    for step in workload.steps():
        say(step())
    return workload.result()


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
    # MLflow 3 may export spans in the background; 2.x has no such call.
    getattr(mlflow, "flush_trace_async_logging", lambda: None)()
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
