import gzip
import hashlib
import json
import random

import pytest
import requests
from werkzeug.wrappers import Response

from mlflow.protos import model_registry_pb2, service_pb2
from mlflow.utils.proto_json_utils import message_to_json

from mlflow_proxy.artifact_location import parse_store_uri
from mlflow_proxy.artifact_uris import URI_FIELDS, UriMapping, UriValueRewrite, is_json
from proxy_support import WRITER

STORE = "s3://team-bucket/mlflow/artifacts"
RUNS_GET = "/api/2.0/mlflow/runs/get"


def _in_chunks(data: bytes, sizes):
    chunks, start = [], 0
    for size in sizes:
        chunks.append(data[start : start + size])
        start += size
    chunks.append(data[start:])
    return chunks


def _run(n):
    return {
        "info": {"run_id": str(n), "artifact_uri": f"{STORE}/1/{n}/artifacts"},
        "data": {
            "params": [{"key": "data", "value": f"{STORE}/raw/{n}.csv"}],
            "tags": [{"key": "mlflow.source.name", "value": "mlflow-artifacts:/raw"}],
        },
    }


def _mapped(run, n):
    run["info"]["artifact_uri"] = f"mlflow-artifacts:/1/{n}/artifacts"
    return run


@pytest.mark.parametrize("indent", [None, 2])
def test_every_split_of_the_stream_gives_the_same_result(indent):
    rewrite = UriMapping(parse_store_uri(STORE)).to_caller(RUNS_GET)
    document = json.dumps({"runs": [_run(n) for n in range(50)]}, indent=indent).encode()
    expected = json.dumps({"runs": [_mapped(_run(n), n) for n in range(50)]}, indent=indent).encode()
    assert expected.count(b"mlflow-artifacts:/1/") == 50
    for size in range(1, 80):  # a boundary at every offset of the pattern
        assert b"".join(rewrite(_in_chunks(document, [size] * (len(document) // size)))) == expected
    rng = random.Random(6)
    for _ in range(50):
        sizes = [rng.randint(0, 120) for _ in range(80)]
        assert b"".join(rewrite(_in_chunks(document, sizes))) == expected


def test_only_the_held_back_tail_waits_for_the_next_chunk():
    rewrite = UriValueRewrite(b"s3://b/", b"mlflow-artifacts:/")
    head = b'{"note": "' + b"x" * 1000
    pieces = list(rewrite(iter([head + b'", "source": "s3:', b'//b/k"}'])))
    # The first chunk goes on at once, but for a tail short enough to start a match.
    assert len(pieces[0]) > 700 and head.startswith(pieces[0])
    assert b"".join(pieces) == head + b'", "source": "mlflow-artifacts:/k"}'


def test_params_tags_and_strings_holding_a_store_uri_are_data_and_left_alone():
    mapping = UriMapping(parse_store_uri(STORE))
    document = json.dumps(
        {
            "params": [{"key": "source", "value": f"{STORE}/raw/data.csv"}],
            "tags": [
                {"key": "artifact_uri", "value": "mlflow-artifacts:/x"},
                {"key": "mlflow.artifactLocation", "value": f"{STORE}/1/r/artifacts"},
            ],
            # A JSON document inside a string: its quotes are escaped, so no key matches.
            "dataset": {"source": json.dumps({"source": f"{STORE}/raw/data.csv"})},
            "artifact_uri_copy": f"{STORE}/1/r/artifacts",
        }
    ).encode()
    assert b"".join(mapping.to_caller(RUNS_GET)([document])) == document
    assert b"".join(mapping.to_upstream(RUNS_GET)([document])) == document


def test_callers_get_mlflow_artifacts_uris_and_sagemaker_gets_s3_back():
    mapping = UriMapping(parse_store_uri(STORE))
    from_sagemaker = json.dumps(
        {
            "run": {"info": {"artifact_uri": f"{STORE}/3/abc/artifacts"}},
            "experiment": {"artifact_location": f"{STORE}/3"},
            "model_version": {"source": f"{STORE}/3/abc/artifacts/model"},
            "root_uri": f"{STORE}/3/abc/artifacts",
            "other_prefix": {"artifact_uri": "s3://team-bucket/mlflow/artifactsX/1"},
            "other_bucket": {"artifact_uri": "s3://someone-else/mlflow/artifacts/1"},
            "root_itself": {"artifact_uri": STORE},
        }
    ).encode()
    to_caller = json.loads(b"".join(mapping.to_caller(RUNS_GET)([from_sagemaker])))
    assert to_caller["run"]["info"]["artifact_uri"] == "mlflow-artifacts:/3/abc/artifacts"
    assert to_caller["experiment"]["artifact_location"] == "mlflow-artifacts:/3"
    assert to_caller["model_version"]["source"] == "mlflow-artifacts:/3/abc/artifacts/model"
    assert to_caller["root_uri"] == "mlflow-artifacts:/3/abc/artifacts"
    assert to_caller["other_prefix"]["artifact_uri"] == "s3://team-bucket/mlflow/artifactsX/1"
    assert to_caller["other_bucket"]["artifact_uri"] == "s3://someone-else/mlflow/artifacts/1"
    assert to_caller["root_itself"]["artifact_uri"] == STORE

    from_caller = b'{"source" :\n "mlflow-artifacts:/3/abc/artifacts/model", "x": "s3://b2/p/1"}'
    upstream = json.loads(b"".join(mapping.to_upstream(RUNS_GET)([from_caller])))
    assert upstream == {"source": f"{STORE}/3/abc/artifacts/model", "x": "s3://b2/p/1"}


def _tags(message, tags):
    for key, value in tags.items():
        if hasattr(message.tags, "add"):  # a key/value list
            message.tags.add(key=key, value=value)
        else:  # a map
            message.tags[key] = value
    return message


# For each of URI_FIELDS: (name, tag_entry) -> a path whose bodies carry it, and a function of
# the URI giving the JSON MLflow writes there (its own protos and serialiser).
EXAMPLES = {
    ("artifact_uri", False): (
        RUNS_GET,
        lambda uri: service_pb2.RunInfo(run_id="r", artifact_uri=uri),
    ),
    ("artifact_location", False): (
        "/api/2.0/mlflow/experiments/get",
        lambda uri: service_pb2.Experiment(experiment_id="1", artifact_location=uri),
    ),
    ("source", False): (
        "/api/2.0/mlflow/model-versions/get",
        lambda uri: model_registry_pb2.ModelVersion(name="m", version="1", source=uri),
    ),
    ("root_uri", False): (
        "/api/2.0/mlflow/artifacts/list",
        lambda uri: service_pb2.ListArtifacts.Response(root_uri=uri),
    ),
    ("mlflow.artifactLocation", False): (
        "/api/3.0/mlflow/traces/search",
        lambda uri: _tags(
            service_pb2.TraceInfoV3(trace_id="tr-1"), {"a": "b", "mlflow.artifactLocation": uri}
        ),
    ),
    ("mlflow.artifactLocation", True): (
        "/ajax-api/2.0/mlflow/traces/tr-1/info",
        lambda uri: _tags(
            service_pb2.TraceInfo(request_id="tr-1"), {"a": "b", "mlflow.artifactLocation": uri}
        ),
    ),
}


def test_every_uri_field_has_an_example():
    assert sorted(EXAMPLES) == sorted((field.name, field.tag_entry) for field in URI_FIELDS)


@pytest.mark.parametrize("field", URI_FIELDS, ids=lambda field: f"{field.name} {field.carried_by}")
def test_each_uri_field_is_mapped_both_ways_as_mlflow_writes_it(field):
    mapping = UriMapping(parse_store_uri(STORE))
    path, example = EXAMPLES[(field.name, field.tag_entry)]
    compact = lambda message: json.dumps(json.loads(message_to_json(message)))  # noqa: E731
    for write in (message_to_json, compact):
        from_sagemaker = write(example(f"{STORE}/1/x/artifacts")).encode()
        from_proxy = write(example("mlflow-artifacts:/1/x/artifacts")).encode()
        assert b"".join(mapping.to_caller(path)([from_sagemaker])) == from_proxy
        assert b"".join(mapping.to_upstream(path)([from_proxy])) == from_sagemaker
    if field.only_under:
        # Elsewhere (a run's tags) the same name is data.
        assert b"".join(mapping.to_caller(RUNS_GET)([from_sagemaker])) == from_sagemaker


def test_a_store_at_the_bucket_root_maps_the_whole_bucket():
    mapping = UriMapping(parse_store_uri("s3://whole-bucket"))
    document = b'{"artifact_uri": "s3://whole-bucket/0/r/artifacts"}'
    assert b"".join(mapping.to_caller(RUNS_GET)([document])) == (
        b'{"artifact_uri": "mlflow-artifacts:/0/r/artifacts"}'
    )


@pytest.mark.parametrize(
    "content_type, expected",
    [("application/json", True), ("application/json; charset=utf-8", True),
     ("Application/JSON", True), ("text/plain", False), ("application/octet-stream", False),
     (None, False), ("", False)],
)
def test_only_json_bodies_are_rewritten(content_type, expected):
    assert is_json(content_type) is expected


# -- through the proxy: SageMaker's JSON in both directions ------------------------------------

@pytest.fixture
def mapping_proxy(start_proxy, proxy_env):
    return start_proxy({**proxy_env, "MLFLOW_PROXY_ARTIFACT_STORE_URI": STORE})


def test_run_artifact_uris_reach_the_caller_as_mlflow_artifacts_uris(mapping_proxy, upstream):
    document = json.dumps(
        {
            "run": {"info": {"artifact_uri": f"{STORE}/1/abc/artifacts", "run_name": "x" * 100_000}},
            "elsewhere": "s3://another-bucket/mlflow/artifacts/1",
        }
    )
    upstream.respond = lambda request: Response(document, content_type="application/json")
    answer = requests.get(mapping_proxy + "/api/2.0/mlflow/runs/get?run_id=abc", headers=WRITER)
    assert answer.json()["run"]["info"]["artifact_uri"] == "mlflow-artifacts:/1/abc/artifacts"
    assert answer.json()["elsewhere"] == "s3://another-bucket/mlflow/artifacts/1"
    assert len(answer.content) == len(document) - (len(STORE) + 1 - len("mlflow-artifacts:/"))
    # Asked for plain bytes, so the mapping sees the URIs and not gzip.
    assert upstream.last.header("Accept-Encoding") == "identity"


def test_other_bodies_pass_byte_for_byte(mapping_proxy, upstream):
    text = f"{STORE}/1/abc/artifacts".encode()
    upstream.respond = lambda request: Response(text, content_type="text/plain")
    answer = requests.get(mapping_proxy + "/api/2.0/mlflow/runs/get", headers=WRITER)
    assert answer.content == text
    # An upstream that compresses anyway: not ours to decode, it leaves as it came.
    upstream.respond = lambda request: Response(
        gzip.compress(text), content_type="application/json", headers={"Content-Encoding": "gzip"}
    )
    answer = requests.get(mapping_proxy + "/api/2.0/mlflow/runs/get", headers=WRITER)
    assert answer.content == text


def test_a_model_version_source_goes_to_sagemaker_as_s3_and_is_signed_as_sent(
    mapping_proxy, upstream
):
    body = {"name": "m", "source": "mlflow-artifacts:/1/abc/artifacts/model", "run_id": "abc"}
    answer = requests.post(
        mapping_proxy + "/api/2.0/mlflow/model-versions/create", json=body, headers=WRITER
    )
    assert answer.status_code == 200
    sent = upstream.last
    assert json.loads(sent.body)["source"] == f"{STORE}/1/abc/artifacts/model"
    # Rewritten before hashing: the hash SageMaker checks is that of the bytes it receives.
    assert sent.header("X-Amz-Content-SHA256") == hashlib.sha256(sent.body).hexdigest()
    assert int(sent.header("Content-Length")) == len(sent.body)


def test_without_a_store_nothing_is_rewritten(proxy, upstream):
    document = json.dumps({"artifact_uri": f"{STORE}/1/abc/artifacts"})
    upstream.respond = lambda request: Response(document, content_type="application/json")
    answer = requests.get(proxy + "/api/2.0/mlflow/runs/get", headers=WRITER)
    assert answer.text == document
    requests.post(proxy + "/api/2.0/mlflow/runs/create", json={"x": "mlflow-artifacts:/1"}, headers=WRITER)
    assert json.loads(upstream.last.body) == {"x": "mlflow-artifacts:/1"}
