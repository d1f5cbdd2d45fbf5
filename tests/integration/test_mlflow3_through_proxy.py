"""MLflow 3's surfaces with the real client and only a token: proxy -> stand-in -> mlflow server.

Traces (sent over OTLP, and as a trace artifact by a client that does not use OTLP), logged
models, the prompt registry, GenAI evaluation datasets, webhooks, and the server's routes outside
/api/. Each test runs in both modes (the stand_in fixture).
"""

import uuid

import mlflow
import pandas
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import AssessmentSource, WebhookEvent
from mlflow.store.tracking.rest_store import RestStore

from local.workload import AddOne

pytestmark = pytest.mark.slow

SPANS_LOCATION = "mlflow.trace.spansLocation"


def unique(prefix):
    return f"{prefix} {uuid.uuid4().hex[:8]}"


@pytest.fixture
def fluent(stand_in, monkeypatch):
    """mlflow's fluent API (traces included) through the proxy, with the read-write token."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", stand_in.token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # Traces are exported when their root span ends, not later from a queue.
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
    mlflow.set_tracking_uri(stand_in.proxy_url)  # also sets the tracer up again for this URI
    experiment_id = mlflow.set_experiment(unique("mlflow 3")).experiment_id
    yield experiment_id
    mlflow.set_tracking_uri(None)


def headers(token):
    return {"Authorization": f"Bearer {token}"}


@mlflow.trace(name="answer", span_type="CHAIN")
def answer(question):
    with mlflow.start_span(name="retrieve", span_type="RETRIEVER") as span:
        span.set_inputs({"question": question})
        span.set_attributes({"index": "faq"})
        with mlflow.start_span(name="rank"):
            pass
        span.set_outputs(["doc 1", "doc 2"])
    mlflow.update_current_trace(tags={"topic": "tests"})
    return "42"


def _last_trace_id():
    return mlflow.get_last_active_trace_id()


# -- traces -------------------------------------------------------------------------------------


def test_a_trace_is_stored_with_every_span_and_found_every_way(fluent):
    with mlflow.start_run() as run:
        assert answer("why?") == "42"
    trace_id = _last_trace_id()

    trace = mlflow.get_trace(trace_id)
    assert sorted(span.name for span in trace.data.spans) == ["answer", "rank", "retrieve"]
    retrieve = next(span for span in trace.data.spans if span.name == "retrieve")
    assert retrieve.inputs == {"question": "why?"} and retrieve.outputs == ["doc 1", "doc 2"]
    assert trace.info.tags["topic"] == "tests"
    # Sent over OTLP (/v1/traces), so MLflow keeps the spans in its store.
    assert trace.info.tags[SPANS_LOCATION] == "TRACKING_STORE"

    def found(**criteria):
        traces = mlflow.search_traces(return_type="list", **criteria)
        return [trace.info.trace_id for trace in traces]

    assert found(locations=[fluent]) == [trace_id]
    assert found(run_id=run.info.run_id) == [trace_id]
    assert found(locations=[fluent], filter_string="span.name = 'rank'") == [trace_id]
    assert found(locations=[fluent], filter_string="span.name = 'other'") == []
    assert found(locations=[fluent], filter_string="tag.topic = 'tests'") == [trace_id]
    assert len(mlflow.search_traces(locations=[fluent])) == 1  # a DataFrame by default


def test_a_trace_of_a_logged_model_carries_its_id(fluent):
    model = mlflow.pyfunc.log_model(
        name="agent", python_model=AddOne(), pip_requirements=["mlflow"]
    )
    mlflow.set_active_model(model_id=model.model_id)
    answer("which model?")
    trace_id = _last_trace_id()
    mlflow.clear_active_model()

    traces = mlflow.search_traces(model_id=model.model_id, return_type="list")
    assert [trace.info.trace_id for trace in traces] == [trace_id]
    assert mlflow.get_trace(trace_id).info.request_metadata["mlflow.modelId"] == model.model_id


def test_feedback_on_a_trace_and_its_deletion(fluent):
    answer("good?")
    trace_id = _last_trace_id()

    feedback = mlflow.log_feedback(
        trace_id=trace_id,
        name="helpful",
        value=True,
        source=AssessmentSource(source_type="HUMAN", source_id="reviewer"),
        rationale="it answered",
    )
    mlflow.log_expectation(trace_id=trace_id, name="expected", value="42")

    assessments = {item.name: item for item in mlflow.get_trace(trace_id).info.assessments}
    assert assessments["helpful"].value is True
    assert assessments["expected"].value == "42"
    assert mlflow.get_assessment(trace_id, feedback.assessment_id).rationale == "it answered"

    deleted = MlflowClient().delete_traces(experiment_id=fluent, trace_ids=[trace_id])
    assert deleted == 1
    assert mlflow.search_traces(locations=[fluent], return_type="list") == []


def test_a_client_without_otlp_writes_the_spans_as_a_trace_artifact(fluent, stand_in, monkeypatch):
    # As MLflow < 3.4 clients do (and 3.4+ where the server's version is unknown): the spans go
    # to the trace's mlflow.artifactLocation, which the proxy serves from S3.
    monkeypatch.setattr(RestStore, "_get_server_version", staticmethod(lambda creds: None))
    mlflow.set_tracking_uri(stand_in.proxy_url)  # a new exporter, which asks again
    answer("no otlp?")
    trace_id = _last_trace_id()

    trace = mlflow.get_trace(trace_id)
    assert SPANS_LOCATION not in trace.info.tags
    assert trace.info.tags["mlflow.artifactLocation"].startswith("mlflow-artifacts:/")
    assert sorted(span.name for span in trace.data.spans) == ["answer", "rank", "retrieve"]
    # The UI's trace artifact handler reads the same traces.json from S3 upstream.
    for version in ("2.0", "3.0"):
        served = requests.get(
            f"{stand_in.proxy_url}/ajax-api/{version}/mlflow/get-trace-artifact",
            params={"request_id": trace_id},
            headers=headers(stand_in.read_only_token),
        )
        assert served.status_code == 200, served.text
        assert sorted(span["name"] for span in served.json()["spans"]) == [
            "answer",
            "rank",
            "retrieve",
        ]


def test_a_read_only_token_reads_traces_but_cannot_send_spans(fluent, stand_in):
    answer("read only?")
    trace_id = _last_trace_id()
    read = requests.get(
        f"{stand_in.proxy_url}/api/3.0/mlflow/traces/get",
        params={"trace_id": trace_id},
        headers=headers(stand_in.read_only_token),
    )
    assert read.status_code == 200 and read.json()["trace"]["trace_info"]["trace_id"] == trace_id
    for path in ("/v1/traces", "/api/3.0/mlflow/traces"):
        refused = requests.post(
            stand_in.proxy_url + path,
            data=b"\x00",
            headers={**headers(stand_in.read_only_token), "Content-Type": "application/x-protobuf"},
        )
        assert refused.status_code == 403, path
        assert refused.json()["error_code"] == "PERMISSION_DENIED"


# -- logged models, prompts, datasets, webhooks -------------------------------------------------


def test_logged_models_are_logged_searched_and_loaded_by_model_id(fluent):
    with mlflow.start_run():
        model = mlflow.pyfunc.log_model(
            name="add one", python_model=AddOne(), pip_requirements=["mlflow"]
        )
    assert model.model_uri == f"models:/{model.model_id}"
    found = mlflow.search_logged_models(experiment_ids=[fluent], output_format="list")
    assert [logged.model_id for logged in found] == [model.model_id]
    assert found[0].artifact_location.startswith("mlflow-artifacts:/")
    loaded = mlflow.pyfunc.load_model(f"models:/{model.model_id}")
    assert list(loaded.predict(pandas.DataFrame({"x": [1, 41]}))) == [2, 42]


def test_prompts_are_registered_loaded_and_aliased(fluent):
    name = unique("greeting").replace(" ", "-")
    first = mlflow.genai.register_prompt(name=name, template="Hello {{name}}!")
    second = mlflow.genai.register_prompt(name=name, template="Hi {{name}}, welcome.")
    mlflow.genai.set_prompt_alias(name, alias="production", version=first.version)

    assert mlflow.genai.load_prompt(f"prompts:/{name}/{second.version}").format(name="Ada") == (
        "Hi Ada, welcome."
    )
    by_alias = mlflow.genai.load_prompt(f"prompts:/{name}@production")
    assert by_alias.version == first.version
    assert by_alias.format(name="Ada") == "Hello Ada!"


def test_genai_evaluation_datasets_from_records_and_traces(fluent):
    from mlflow.genai.datasets import create_dataset, get_dataset, search_datasets

    answer("what is in the dataset?")
    traces = mlflow.search_traces(locations=[fluent], return_type="list")
    name = unique("eval set")
    dataset = create_dataset(name=name, experiment_id=[fluent])
    dataset.merge_records(
        [{"inputs": {"question": "why?"}, "expectations": {"answer": "42"}}]
    )
    dataset.merge_records(traces)

    again = get_dataset(dataset_id=dataset.dataset_id)
    questions = sorted(record["inputs"]["question"] for record in again.to_df().to_dict("records"))
    assert questions == ["what is in the dataset?", "why?"]
    assert [found.dataset_id for found in search_datasets(experiment_ids=[fluent])] == [
        dataset.dataset_id
    ]


def test_webhooks_are_created_listed_and_deleted(fluent):
    client = MlflowClient()
    name = unique("hook").replace(" ", "-")
    # MLflow resolves the host and refuses private addresses; disabled, nothing is ever sent.
    url = "https://8.8.8.8/mlflow-webhook"
    hook = client.create_webhook(
        name=name,
        url=url,
        events=[WebhookEvent("model_version", "created")],
        status="DISABLED",
    )
    assert name in [listed.name for listed in client.list_webhooks()]
    assert client.get_webhook(hook.webhook_id).url == url
    client.delete_webhook(hook.webhook_id)
    assert name not in [listed.name for listed in client.list_webhooks()]


# -- the server's routes outside /api/ ----------------------------------------------------------


def test_version_and_graphql(stand_in):
    version = requests.get(stand_in.proxy_url + "/version", headers=headers(stand_in.token))
    assert version.status_code == 200 and version.text == mlflow.__version__

    query = {
        "query": 'query { mlflowGetExperiment(input: {experimentId: "0"}) '
        "{ experiment { name } } }"
    }
    for token in (stand_in.token, stand_in.read_only_token):
        answered = requests.post(
            stand_in.proxy_url + "/graphql", json=query, headers=headers(token)
        )
        assert answered.status_code == 200, answered.text
        assert answered.json()["data"]["mlflowGetExperiment"]["experiment"]["name"] == "Default"


def test_artifact_routes_outside_the_api(fluent, stand_in):
    client = MlflowClient()
    run = client.create_run(fluent)
    run_id = run.info.run_id
    uploaded = requests.post(
        stand_in.proxy_url + "/ajax-api/2.0/mlflow/upload-artifact",
        params={"run_uuid": run_id, "path": "uploaded.txt"},
        data=b"from the UI's upload route",
        headers=headers(stand_in.token),
    )
    assert uploaded.status_code == 200, uploaded.text
    assert [item.path for item in client.list_artifacts(run_id)] == ["uploaded.txt"]

    served = requests.get(
        stand_in.proxy_url + "/get-artifact",
        params={"run_uuid": run_id, "path": "uploaded.txt"},
        headers=headers(stand_in.read_only_token),
    )
    assert served.status_code == 200, served.text
    assert served.content == b"from the UI's upload route"

    client.log_text(run_id, "model card", "model/card.txt")
    name = unique("routed model")
    client.create_registered_model(name)
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id)
    card = requests.get(
        stand_in.proxy_url + "/model-versions/get-artifact",
        params={"name": name, "version": version.version, "path": "card.txt"},
        headers=headers(stand_in.read_only_token),
    )
    assert card.status_code == 200, card.text
    assert card.content == b"model card"


def test_the_ui_upload_route_refuses_a_read_only_token(fluent, stand_in):
    run_id = MlflowClient().create_run(fluent).info.run_id
    refused = requests.post(
        stand_in.proxy_url + "/ajax-api/2.0/mlflow/upload-artifact",
        params={"run_uuid": run_id, "path": "x.txt"},
        data=b"x",
        headers=headers(stand_in.read_only_token),
    )
    assert refused.status_code == 403
    assert MlflowClient().list_artifacts(run_id) == []


# -- long query strings -------------------------------------------------------------------------


def test_history_of_100_runs_in_one_request_and_an_over_long_line_refused_as_json(
    fluent, stand_in
):
    client = MlflowClient()
    # MLflow's maximum for get-history-bulk-interval; two of them have a history to find.
    run_ids = [client.create_run(fluent).info.run_id for _ in range(100)]
    with_history = [run_ids[0], run_ids[-1]]
    for step, run_id in enumerate(with_history):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
    url = stand_in.proxy_url + "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
    query = {"run_ids": run_ids, "metric_key": "loss", "max_results": 1000}

    history = requests.get(url, params=query, headers=headers(stand_in.read_only_token))
    assert len(history.request.path_url) > 4000
    assert history.status_code == 200, history.text
    assert sorted(metric["run_id"] for metric in history.json()["metrics"]) == sorted(with_history)

    too_long = requests.get(
        url, params={**query, "run_ids": run_ids * 3}, headers=headers(stand_in.read_only_token)
    )
    assert too_long.status_code == 400
    assert too_long.json()["error_code"] == "INVALID_PARAMETER_VALUE"
