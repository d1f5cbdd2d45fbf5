"""Artifacts and models through the proxy with the real MLflow client, in both modes.

The client has a token and no AWS credentials at all: every artifact byte goes through the
proxy, which keeps it in the stand-in's S3 (moto_server), as the proxy does in the bucket on AWS.
"""

import hashlib
import os
import uuid

import botocore.session
import mlflow
import pandas as pd
import pytest
import requests

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input * 2


@pytest.fixture
def no_aws_credentials(monkeypatch):
    """The client side has nothing of AWS: had it tried S3 itself, it would fail."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def experiment_id(client, no_aws_credentials):
    return client.create_experiment(f"artifacts {uuid.uuid4().hex[:8]}")


@pytest.fixture
def s3(stand_in):
    """Looks into the stand-in's S3 the way an operator would, with the bucket's own key."""
    return botocore.session.Session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=stand_in.s3_url,
        aws_access_key_id="operator",
        aws_secret_access_key="operator",
    )


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _upstream_run(stand_in, run_id):
    """The run as SageMaker (the MLflow server behind the emulator) stores it."""
    answer = requests.get(stand_in.mlflow_url + "/api/2.0/mlflow/runs/get", params={"run_id": run_id})
    answer.raise_for_status()
    return answer.json()["run"]


def test_a_large_artifact_and_a_directory_round_trip_byte_identical(
    stand_in, client, experiment_id, s3, tmp_path
):
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(50 * 1024 * 1024))
    plots = tmp_path / "plots"
    (plots / "epoch-1").mkdir(parents=True)
    (plots / "loss.svg").write_text("<svg/>")
    (plots / "epoch-1" / "confusion matrix.csv").write_text("a,b\n1,2\n")

    with mlflow.start_run(experiment_id=experiment_id) as run:
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
        mlflow.log_artifact(str(big))
        mlflow.log_artifacts(str(plots), artifact_path="plots")
    run_id = run.info.run_id

    listed = {(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run_id)}
    assert listed == {("weights.bin", False, big.stat().st_size), ("plots", True, None)}
    assert sorted(f.path for f in client.list_artifacts(run_id, "plots")) == [
        "plots/epoch-1",
        "plots/loss.svg",
    ]

    back = tmp_path / "back"
    back.mkdir()
    mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(back))
    assert _sha256(back / "weights.bin") == _sha256(big)
    assert (back / "plots" / "loss.svg").read_text() == "<svg/>"
    assert (back / "plots" / "epoch-1" / "confusion matrix.csv").read_text() == "a,b\n1,2\n"

    # SageMaker only ever saw an s3:// URI, and the bytes are where that URI says.
    upstream_uri = _upstream_run(stand_in, run_id)["info"]["artifact_uri"]
    assert upstream_uri.startswith(stand_in.artifact_store_uri + "/")
    bucket, _, prefix = upstream_uri[len("s3://") :].partition("/")
    head = s3.head_object(Bucket=bucket, Key=f"{prefix}/weights.bin")
    assert head["ContentLength"] == big.stat().st_size
    # Streamed on by the proxy as one PutObject (S3's ETag of one is its body's MD5), not parts.
    assert head["ETag"] == '"%s"' % hashlib.md5(big.read_bytes()).hexdigest()


def test_a_model_is_logged_registered_and_loaded_by_version_and_alias(
    stand_in, client, experiment_id
):
    name = f"doubler-{uuid.uuid4().hex[:8]}"
    with mlflow.start_run(experiment_id=experiment_id):
        mlflow.pyfunc.log_model(
            name="model",
            python_model=Doubler(),
            pip_requirements=["mlflow"],  # no requirement inference: it would import the world
            registered_model_name=name,
        )
    client.set_registered_model_alias(name, "champion", "1")
    numbers = pd.DataFrame({"x": [1, 2, 3]})
    for uri in (f"models:/{name}/1", f"models:/{name}@champion"):
        loaded = mlflow.pyfunc.load_model(uri)
        assert loaded.predict(numbers)["x"].tolist() == [2, 4, 6]

    # What SageMaker stores for the version points into S3, never at the proxy's scheme.
    answer = requests.get(
        stand_in.mlflow_url + "/api/2.0/mlflow/model-versions/get",
        params={"name": name, "version": "1"},
    )
    source = answer.json()["model_version"]["source"]
    assert "mlflow-artifacts:" not in source
    assert source.startswith((stand_in.artifact_store_uri + "/", "models:/")), source


def test_a_read_only_token_downloads_but_cannot_upload(
    stand_in, client, client_for, experiment_id, tmp_path
):
    note = tmp_path / "note.txt"
    note.write_text("written with a read-write token")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_artifact(run_id, str(note))

    reader = client_for(stand_in.read_only_token)
    downloaded = reader.download_artifacts(run_id, "note.txt", str(tmp_path))
    assert open(downloaded).read() == "written with a read-write token"
    # The artifact client raises requests' HTTPError, carrying the proxy's MLflow-shaped body.
    with pytest.raises(requests.HTTPError, match="PERMISSION_DENIED") as refused:
        reader.log_artifact(run_id, str(note), artifact_path="again")
    assert refused.value.response.status_code == 403
    assert [f.path for f in reader.list_artifacts(run_id)] == ["note.txt"]


@pytest.mark.parametrize(
    "method, path",
    [
        ("PUT", ARTIFACTS + "/0/%2e%2e/%2e%2e/outside.txt"),
        ("GET", ARTIFACTS + "/0/..%2F..%2Foutside.txt"),
        ("PUT", ARTIFACTS + "//etc/outside.txt"),
        ("GET", ARTIFACTS + "?path=/etc"),
        ("GET", ARTIFACTS + "?path=0/../.."),
    ],
)
def test_dot_dot_and_absolute_paths_are_refused(stand_in, s3, method, path):
    session = requests.Session()
    request = requests.Request(
        method,
        stand_in.proxy_url + path,
        data=b"x" if method == "PUT" else None,
        headers={"Authorization": f"Bearer {stand_in.token}"},
    ).prepare()
    request.url = stand_in.proxy_url + path  # exactly as written: requests would normalise it
    refused = session.send(request)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    bucket = stand_in.artifact_store_uri[len("s3://") :].split("/")[0]
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert not any(key.endswith("outside.txt") for key in keys)


def test_an_s3_uri_outside_the_store_passes_through_untouched(stand_in, client, no_aws_credentials):
    elsewhere = "s3://someone-elses-bucket/their/experiments"
    experiment_id = client.create_experiment(
        f"elsewhere {uuid.uuid4().hex[:8]}", artifact_location=elsewhere
    )
    assert client.get_experiment(experiment_id).artifact_location == elsewhere
    upstream = requests.get(
        stand_in.mlflow_url + "/api/2.0/mlflow/experiments/get",
        params={"experiment_id": experiment_id},
    )
    assert upstream.json()["experiment"]["artifact_location"] == elsewhere


def test_ui_redirects_an_authenticated_caller_and_refuses_an_anonymous_one(stand_in):
    anonymous = requests.get(stand_in.proxy_url + "/ui", allow_redirects=False)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")

    signed_in = requests.get(
        stand_in.proxy_url + "/ui", auth=("anyone", stand_in.token), allow_redirects=False
    )
    assert signed_in.status_code == 302
    location = signed_in.headers["Location"]
    assert location.startswith(stand_in.mlflow_url + "/")
    # The presigned URL opens the MLflow UI (here the local server's; on AWS, SageMaker's).
    page = requests.get(location)
    assert page.status_code == 200 and "<html" in page.text.lower()


def test_params_and_tags_holding_artifact_uris_read_back_as_logged(
    stand_in, client, experiment_id
):
    store_uri = stand_in.artifact_store_uri + "/raw/data.csv"
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "input", store_uri)
    client.set_tag(run.info.run_id, "copied_from", "mlflow-artifacts:/raw/data.csv")

    read_back = client.get_run(run.info.run_id)
    assert read_back.data.params["input"] == store_uri
    assert read_back.data.tags["copied_from"] == "mlflow-artifacts:/raw/data.csv"
    # The run's own artifact URI is still mapped, and SageMaker holds what was logged.
    assert read_back.info.artifact_uri.startswith("mlflow-artifacts:/")
    upstream = _upstream_run(stand_in, run.info.run_id)
    assert upstream["info"]["artifact_uri"].startswith(stand_in.artifact_store_uri + "/")
    assert {p["key"]: p["value"] for p in upstream["data"]["params"]} == {"input": store_uri}
    tags = {t["key"]: t["value"] for t in upstream["data"]["tags"]}
    assert tags["copied_from"] == "mlflow-artifacts:/raw/data.csv"
