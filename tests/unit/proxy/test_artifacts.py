"""The artifact API as MLflow's client calls it: HTTP through the proxy, S3 behind it."""

import hashlib
import http.client
import json
import os
from urllib.parse import urlsplit

import pytest
import requests

from mlflow_proxy.artifact_store import MAX_PARTS
from mlflow_proxy.config import DEFAULT_MAX_ARTIFACT_BYTES, ConfigError, load_config
from proxy_support import READER, WRITER, WRITER_TOKEN, all_keys

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


@pytest.fixture
def proxy(start_proxy, proxy_env, aws_env, s3_endpoint, bucket):
    """The real app, serving the store s3://<bucket>/store from moto's S3."""
    aws_env.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    return start_proxy({**proxy_env, "MLFLOW_PROXY_ARTIFACT_STORE_URI": f"s3://{bucket}/store"})


def test_upload_download_list_delete_round_trip(proxy, upstream, s3, bucket):
    data = os.urandom(3 * 1024 * 1024 + 5)
    put = requests.put(proxy + ARTIFACTS + "/1/r/artifacts/dir/blob.bin", data=data, headers=WRITER)
    assert put.status_code == 200 and put.json() == {}
    assert all_keys(s3, bucket) == ["store/1/r/artifacts/dir/blob.bin"]

    got = requests.get(proxy + ARTIFACTS + "/1/r/artifacts/dir/blob.bin", headers=READER, stream=True)
    assert got.status_code == 200
    assert int(got.headers["Content-Length"]) == len(data)
    assert hashlib.sha256(got.raw.read()).digest() == hashlib.sha256(data).digest()

    listed = requests.get(proxy + ARTIFACTS, params={"path": "1/r/artifacts"}, headers=READER)
    assert listed.json() == {"files": [{"path": "dir", "is_dir": True}]}
    listed = requests.get(proxy + ARTIFACTS, params={"path": "1/r/artifacts/dir"}, headers=READER)
    assert listed.json() == {"files": [{"path": "blob.bin", "is_dir": False, "file_size": len(data)}]}

    deleted = requests.delete(proxy + ARTIFACTS + "/1/r/artifacts/dir", headers=WRITER)
    assert deleted.status_code == 200
    assert all_keys(s3, bucket) == []
    assert upstream.requests == []  # served by the proxy, never forwarded to SageMaker


def test_head_of_an_artifact_gives_its_size_without_a_body(proxy):
    requests.put(proxy + ARTIFACTS + "/0/a.bin", data=b"x" * 300_000, headers=WRITER).raise_for_status()
    with requests.Session() as session:
        head = session.head(proxy + ARTIFACTS + "/0/a.bin", headers=READER)
        assert (head.status_code, head.headers["Content-Length"], head.content) == (200, "300000", b"")
        # The same connection carries on: nothing of the body was left on it.
        assert session.get(proxy + ARTIFACTS + "/0/a.bin", headers=READER).content == b"x" * 300_000


def test_the_ajax_prefix_serves_the_same_store(proxy):
    requests.put(proxy + ARTIFACTS + "/0/a.txt", data=b"a", headers=WRITER).raise_for_status()
    got = requests.get(proxy + "/ajax-api/2.0/mlflow-artifacts/artifacts/0/a.txt", headers=READER)
    assert got.content == b"a"


def test_a_read_only_token_downloads_but_cannot_change_anything(proxy, s3, bucket):
    requests.put(proxy + ARTIFACTS + "/0/a.txt", data=b"a", headers=WRITER).raise_for_status()
    for method, path, body in [
        ("PUT", ARTIFACTS + "/0/b.txt", b"b"),
        ("DELETE", ARTIFACTS + "/0/a.txt", None),
        ("POST", "/api/2.0/mlflow-artifacts/mpu/create/0", b'{"path": "b.bin", "num_parts": 1}'),
    ]:
        refused = requests.request(method, proxy + path, data=body, headers=READER)
        assert refused.status_code == 403, (method, path)
        assert refused.json()["error_code"] == "PERMISSION_DENIED"
    assert all_keys(s3, bucket) == ["store/0/a.txt"]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_no_token_no_artifacts(proxy):
    for method in ("GET", "PUT"):
        refused = requests.request(method, proxy + ARTIFACTS + "/0/a.txt", data=b"x")
        assert refused.status_code == 401
        assert refused.json()["error_code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "raw_path",
    [
        "/0/%2e%2e/%2e%2e/outside.txt",
        "/0/%252e%252e/%252e%252e/outside.txt",
        "/%2Foutside.txt",
        "/0/..%5Coutside.txt",
        "/0//outside.txt",
    ],
)
def test_paths_escaping_the_store_are_refused_before_s3_is_asked(proxy, s3, bucket, raw_path):
    url = proxy + ARTIFACTS + raw_path
    for method in ("PUT", "GET", "DELETE"):
        # A prepared request keeps the path as written: requests would otherwise normalise it.
        session = requests.Session()
        prepared = requests.Request(method, url, data=b"x" if method == "PUT" else None, headers=WRITER).prepare()
        prepared.url = url
        refused = session.send(prepared)
        assert refused.status_code in (400, 404), (method, raw_path, refused.text)
        if refused.status_code == 400:
            assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert all_keys(s3, bucket) == []


@pytest.mark.parametrize("path", ["../x", "/etc", "0/../../x", "%2e%2e/x"])
def test_listing_outside_the_store_is_refused(proxy, path):
    refused = requests.get(proxy + ARTIFACTS, params={"path": path}, headers=READER)
    assert refused.status_code == 400
    assert refused.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": refused.json()["message"],
    }
    assert "Invalid artifact path" in refused.json()["message"]


def test_a_missing_artifact_is_a_404_the_client_understands(proxy):
    missing = requests.get(proxy + ARTIFACTS + "/0/nope.txt", headers=READER)
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_multipart_endpoints_hand_out_presigned_part_urls(proxy, s3, bucket):
    mpu = "/api/2.0/mlflow-artifacts/mpu"
    created = requests.post(
        proxy + mpu + "/create/1/r/artifacts",
        json={"path": "/tmp/local/model.bin", "num_parts": 1},
        headers=WRITER,
    )
    assert created.status_code == 200, created.text
    credential = created.json()["credentials"][0]
    part = requests.put(credential["url"], data=b"part-one", headers=credential["headers"])
    assert part.status_code == 200
    completed = requests.post(
        proxy + mpu + "/complete/1/r/artifacts",
        json={
            "path": "/tmp/local/model.bin",
            "upload_id": created.json()["upload_id"],
            "parts": [{"part_number": 1, "etag": part.headers["ETag"], "url": credential["url"]}],
        },
        headers=WRITER,
    )
    assert completed.status_code == 200, completed.text
    assert s3.get_object(Bucket=bucket, Key="store/1/r/artifacts/model.bin")["Body"].read() == b"part-one"


@pytest.mark.parametrize(
    "body, message",
    [
        (b"not json", "not valid JSON"),
        (b"[1]", "JSON object"),
        (b'{"num_parts": 1}', "'path'"),
        (b'{"path": "x.bin", "num_parts": "two"}', "'num_parts'"),
        (b'{"path": "x.bin", "num_parts": true}', "'num_parts'"),
    ],
)
def test_a_malformed_multipart_request_is_a_clear_400(proxy, body, message):
    refused = requests.post(
        proxy + "/api/2.0/mlflow-artifacts/mpu/create/1/r/artifacts", data=body, headers=WRITER
    )
    assert refused.status_code == 400
    assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert message in refused.json()["message"]


def test_mlflows_own_artifact_client_round_trips_through_the_proxy(proxy, monkeypatch, tmp_path):
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", WRITER_TOKEN)
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(6 * 1024 * 1024))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(5 * 1024 * 1024))
    source = tmp_path / "source"
    (source / "nested").mkdir(parents=True)
    (source / "small.txt").write_bytes(b"small")
    (source / "nested" / "big.bin").write_bytes(os.urandom(11 * 1024 * 1024))  # 3 presigned parts
    repository = MlflowArtifactsRepository("mlflow-artifacts:/1/run/artifacts", tracking_uri=proxy)

    repository.log_artifacts(str(source), artifact_path="out")

    assert sorted((f.path, f.is_dir) for f in repository.list_artifacts("out")) == [
        ("out/nested", True),
        ("out/small.txt", False),
    ]
    (tmp_path / "back").mkdir()
    downloaded = repository.download_artifacts("out", dst_path=str(tmp_path / "back"))
    for name in ("small.txt", "nested/big.bin"):
        assert (tmp_path / "back" / "out" / name).read_bytes() == (source / name).read_bytes()
    assert downloaded.endswith("out")


def test_the_rest_of_the_artifact_api_is_a_404_here_and_never_forwarded(proxy, upstream):
    # e.g. presigned downloads: the client falls back to streaming through the proxy on 404.
    for method, path in [("GET", "/presigned/0/a.bin"), ("POST", "/mpu/other/0"), ("GET", "/")]:
        answer = requests.request(method, proxy + "/api/2.0/mlflow-artifacts" + path, headers=WRITER)
        assert answer.status_code == 404, (method, path)
        assert answer.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert upstream.requests == []


@pytest.mark.parametrize(
    "name, uploaded_as, served_as",
    [
        ("page.html", "text/html", "application/octet-stream"),
        ("image.svg", "image/svg+xml", "application/octet-stream"),
        ("page.png", "text/html", "image/png"),  # typed from the name, not by the uploader
        ("MLmodel", "text/html", "text/plain"),
    ],
)
def test_a_download_never_renders_in_the_proxys_origin(proxy, name, uploaded_as, served_as):
    body = b"<script>fetch('/api/2.0/mlflow/experiments/search')</script>"
    requests.put(
        proxy + ARTIFACTS + "/0/" + name, data=body, headers={**WRITER, "Content-Type": uploaded_as}
    ).raise_for_status()
    got = requests.get(proxy + ARTIFACTS + "/0/" + name, headers=READER)
    assert got.content == body
    assert got.headers["Content-Type"].split(";")[0] == served_as
    assert got.headers["Content-Disposition"] == f"attachment; filename={name}"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Security-Policy"] == "sandbox"


@pytest.mark.parametrize(
    "name",
    ["MLmodel", "mlproject", "MLproject", "conda.yaml", "notes.txt", "json", "a.TXT", "x.png",
     "photo.jpeg", "model.pkl", "data.parquet", "no_extension", "report.pdf", "page.html",
     "image.svg", "script.js", "archive.tar.gz"],
)
def test_download_types_are_mlflows_where_no_browser_runs_the_content(name):
    # MLflow 3.17's own rule (the server's downloads), from the installed MLflow; text and
    # images keep its type, everything else (PDF, HTML, SVG, archives) is a plain download.
    from mlflow.utils.mime_type_utils import _guess_mime_type

    from mlflow_proxy.artifacts import download_type

    mlflows = _guess_mime_type(name)
    kept = mlflows == "text/plain" or mlflows in ("image/png", "image/jpeg")
    assert download_type(name) == (mlflows if kept else "application/octet-stream")
    if name.endswith((".pdf", ".html", ".svg")):
        assert download_type(name) == "application/octet-stream"


def test_a_download_names_a_non_ascii_file_safely(proxy):
    requests.put(proxy + ARTIFACTS + "/0/r%C3%A9sum%C3%A9.txt", data=b"x", headers=WRITER).raise_for_status()
    got = requests.get(proxy + ARTIFACTS + "/0/r%C3%A9sum%C3%A9.txt", headers=READER)
    assert got.headers["Content-Disposition"] == (
        "attachment; filename=resume.txt; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"
    )


@pytest.mark.parametrize("path", [ARTIFACTS, ARTIFACTS + "/0/a.txt", "/api/2.0/mlflow-artifacts/mpu/create/0"])
def test_options_needs_a_token_like_every_other_method(proxy, upstream, path):
    anonymous = requests.options(proxy + path)
    assert anonymous.status_code == 401
    assert anonymous.json()["error_code"] == "UNAUTHENTICATED"
    signed_in = requests.options(proxy + path, headers=WRITER)
    assert signed_in.status_code == 404
    assert signed_in.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert upstream.requests == []


def test_an_upload_declared_past_the_limit_is_refused_before_its_body(proxy, s3, bucket):
    host, port = urlsplit(proxy).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)  # old code waited for the body
    try:
        connection.putrequest("PUT", ARTIFACTS + "/0/huge.bin")
        connection.putheader("Authorization", WRITER["Authorization"])
        connection.putheader("Content-Length", str(DEFAULT_MAX_ARTIFACT_BYTES + 1))
        connection.endheaders()  # and no body: the answer comes without it
        answer = connection.getresponse()
        assert answer.status == 413
        assert json.loads(answer.read())["error_code"] == "RESOURCE_LIMIT_EXCEEDED"
    finally:
        connection.close()
    assert all_keys(s3, bucket) == []


def test_the_artifact_limit_is_configurable(proxy_env):
    assert load_config(proxy_env).max_artifact_bytes == DEFAULT_MAX_ARTIFACT_BYTES
    assert load_config({**proxy_env, "MLFLOW_PROXY_MAX_ARTIFACT_BYTES": "1000"}).max_artifact_bytes == 1000
    with pytest.raises(ConfigError, match="MLFLOW_PROXY_MAX_ARTIFACT_BYTES"):
        load_config({**proxy_env, "MLFLOW_PROXY_MAX_ARTIFACT_BYTES": "-1"})


def test_a_multipart_body_past_a_mebibyte_is_refused(proxy):
    body = json.dumps({"path": "x.bin", "num_parts": 1, "pad": "x" * 1024 * 1024}).encode()
    for send in (body, iter([body])):  # with a Content-Length, and chunked without one
        refused = requests.post(
            proxy + "/api/2.0/mlflow-artifacts/mpu/create/0", data=send, headers=WRITER
        )
        assert refused.status_code == 413
        assert refused.json()["error_code"] == "RESOURCE_LIMIT_EXCEEDED"


def test_completing_with_more_parts_than_s3_allows_is_a_clear_400(proxy):
    parts = [{"part_number": n, "etag": "e"} for n in range(1, MAX_PARTS + 2)]
    body = {"path": "x.bin", "upload_id": "u", "parts": parts}
    refused = requests.post(
        proxy + "/api/2.0/mlflow-artifacts/mpu/complete/0", json=body, headers=WRITER
    )
    assert refused.status_code == 400
    assert f"at most {MAX_PARTS}" in refused.json()["message"]


def test_the_configured_artifact_limit_reaches_the_upload(
    start_proxy, proxy_env, aws_env, s3_endpoint, s3, bucket
):
    aws_env.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    proxy = start_proxy(
        {
            **proxy_env,
            "MLFLOW_PROXY_ARTIFACT_STORE_URI": f"s3://{bucket}/store",
            "MLFLOW_PROXY_MAX_ARTIFACT_BYTES": "1000",
        }
    )
    fits = requests.put(proxy + ARTIFACTS + "/0/fits.bin", data=b"x" * 1000, headers=WRITER)
    assert fits.status_code == 200
    # Chunked, so only the count while streaming can stop it.
    too_big = requests.put(
        proxy + ARTIFACTS + "/0/too-big.bin", data=iter([b"x" * 600, b"x" * 600]), headers=WRITER
    )
    assert too_big.status_code == 413
    assert too_big.json()["error_code"] == "RESOURCE_LIMIT_EXCEEDED"
    assert all_keys(s3, bucket) == ["store/0/fits.bin"]
