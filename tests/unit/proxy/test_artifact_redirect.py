"""MLFLOW_PROXY_ARTIFACT_DOWNLOAD_REDIRECT: artifact GETs answered with a presigned S3 URL.

The proxy is the real app, S3 is moto_server; the redirect is followed by plain requests here
(the real MLflow client, on another host name than the proxy: tests/integration/
test_artifact_download_redirect.py).
"""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from botocore.credentials import RefreshableCredentials

from mlflow_proxy.config import (
    DEFAULT_ARTIFACT_REDIRECT_SECONDS,
    MAX_ARTIFACT_REDIRECT_SECONDS,
    ConfigError,
    load_config,
)
from proxy_support import READER, READER_TOKEN, TOKENS_JSON, TRACKING_ARN, WRITER, WRITER_TOKEN

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
REDIRECT = "MLFLOW_PROXY_ARTIFACT_DOWNLOAD_REDIRECT"
SECONDS = "MLFLOW_PROXY_ARTIFACT_REDIRECT_SECONDS"
BASE = {
    "SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN,
    "MLFLOW_PROXY_TOKENS": TOKENS_JSON,
    "MLFLOW_PROXY_ARTIFACT_STORE_URI": "s3://bucket/store",
}


@pytest.fixture
def start_store_proxy(start_proxy, proxy_env, aws_env, s3_endpoint, bucket):
    """start(**variables) -> the real app serving s3://<bucket>/store from moto's S3."""
    aws_env.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)

    def start(**variables):
        return start_proxy(
            {**proxy_env, "MLFLOW_PROXY_ARTIFACT_STORE_URI": f"s3://{bucket}/store", **variables}
        )

    return start


@pytest.fixture
def proxy(start_store_proxy):
    return start_store_proxy(**{REDIRECT: "true"})


def _put(proxy, path, data, content_type="application/octet-stream"):
    answer = requests.put(
        proxy + ARTIFACTS + path, data=data, headers={**WRITER, "Content-Type": content_type}
    )
    answer.raise_for_status()


def test_off_by_default_the_bytes_come_through_the_proxy(start_store_proxy):
    assert load_config(BASE).artifact_redirect_seconds is None
    proxy = start_store_proxy()
    _put(proxy, "/0/a.bin", b"through the proxy")
    got = requests.get(proxy + ARTIFACTS + "/0/a.bin", headers=READER, allow_redirects=False)
    assert (got.status_code, got.content) == (200, b"through the proxy")
    assert "Location" not in got.headers


def test_a_get_is_a_307_to_a_short_lived_presigned_url_of_the_same_object(
    proxy, s3_endpoint, bucket
):
    _put(proxy, "/1/r/artifacts/model.pkl", b"weights")
    got = requests.get(
        proxy + ARTIFACTS + "/1/r/artifacts/model.pkl", headers=READER, allow_redirects=False
    )
    assert got.status_code == 307
    assert got.headers["Cache-Control"] == "no-store"
    assert got.content == b""
    location = urlsplit(got.headers["Location"])
    assert f"{location.scheme}://{location.netloc}" == s3_endpoint
    assert location.path == f"/{bucket}/store/1/r/artifacts/model.pkl"
    query = parse_qs(location.query)
    assert query["X-Amz-Expires"] == [str(DEFAULT_ARTIFACT_REDIRECT_SECONDS)]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["response-content-type"] == ["application/octet-stream"]
    assert query["response-content-disposition"] == ["attachment; filename=model.pkl"]


@pytest.mark.parametrize(
    "name, uploaded_as, served_as",
    [
        ("page.html", "text/html", "application/octet-stream"),
        ("page.png", "text/html", "image/png"),
        ("MLmodel", "text/html", "text/plain"),
    ],
)
def test_s3_answers_with_the_type_and_name_the_proxy_would_have_sent(
    proxy, start_store_proxy, name, uploaded_as, served_as
):
    body = b"<script>fetch('/api/2.0/mlflow/experiments/search')</script>"
    _put(proxy, "/0/" + name, body, content_type=uploaded_as)
    streamed = requests.get(start_store_proxy() + ARTIFACTS + "/0/" + name, headers=READER)
    with requests.Session() as session:
        redirected = session.get(proxy + ARTIFACTS + "/0/" + name, headers=READER)
    assert [answer.status_code for answer in redirected.history] == [307]
    assert redirected.content == streamed.content == body
    for header in ("Content-Type", "Content-Disposition"):
        assert redirected.headers[header] == streamed.headers[header], header
    assert redirected.headers["Content-Type"].split(";")[0] == served_as
    # requests drops the token on a redirect to another origin; S3 would refuse a second
    # authentication beside the URL's signature.
    assert "Authorization" not in redirected.request.headers


def test_a_non_ascii_name_reaches_s3s_answer_intact(proxy):
    _put(proxy, "/0/r%C3%A9sum%C3%A9.txt", b"x")
    got = requests.get(proxy + ARTIFACTS + "/0/r%C3%A9sum%C3%A9.txt", headers=READER)
    assert got.history[0].status_code == 307
    assert got.headers["Content-Disposition"] == (
        "attachment; filename=resume.txt; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"
    )


def test_the_lifetime_is_configurable(start_store_proxy):
    proxy = start_store_proxy(**{REDIRECT: "true", SECONDS: "120"})
    _put(proxy, "/0/a.bin", b"a")
    got = requests.get(proxy + ARTIFACTS + "/0/a.bin", headers=READER, allow_redirects=False)
    assert parse_qs(urlsplit(got.headers["Location"]).query)["X-Amz-Expires"] == ["120"]


def test_a_missing_artifact_is_mlflows_404_not_a_redirect(proxy):
    got = requests.get(proxy + ARTIFACTS + "/0/missing.bin", headers=READER, allow_redirects=False)
    assert got.status_code == 404
    assert got.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "Location" not in got.headers


def test_head_and_listing_are_answered_by_the_proxy_as_before(proxy):
    _put(proxy, "/0/dir/a.bin", b"x" * 3000)
    head = requests.head(proxy + ARTIFACTS + "/0/dir/a.bin", headers=READER, allow_redirects=False)
    assert (head.status_code, head.headers["Content-Length"]) == (200, "3000")
    listed = requests.get(proxy + ARTIFACTS, params={"path": "0/dir"}, headers=READER)
    assert listed.json() == {"files": [{"path": "a.bin", "is_dir": False, "file_size": 3000}]}


def test_the_token_is_still_checked_before_any_redirect(proxy):
    _put(proxy, "/0/a.bin", b"a")
    for headers in ({}, {"Authorization": "Bearer not-a-token-0123456789"}):
        got = requests.get(proxy + ARTIFACTS + "/0/a.bin", headers=headers, allow_redirects=False)
        assert got.status_code == 401
        assert "Location" not in got.headers
    escaping = requests.get(
        proxy + ARTIFACTS + "/0/%2E%2E/x", headers=READER, allow_redirects=False
    )
    assert escaping.status_code == 400


def test_uploads_and_deletes_are_unchanged(proxy, s3, bucket):
    _put(proxy, "/0/a.bin", b"a")
    assert s3.get_object(Bucket=bucket, Key="store/0/a.bin")["Body"].read() == b"a"
    refused = requests.put(proxy + ARTIFACTS + "/0/b.bin", data=b"b", headers=READER)
    assert refused.status_code == 403
    assert requests.delete(proxy + ARTIFACTS + "/0/a.bin", headers=WRITER).status_code == 200


def test_the_access_log_records_the_redirect_and_never_the_url(proxy, proxy_log):
    _put(proxy, "/0/a.bin", b"a")
    got = requests.get(proxy + ARTIFACTS + "/0/a.bin", headers=READER, allow_redirects=False)
    signature = parse_qs(urlsplit(got.headers["Location"]).query)["X-Amz-Signature"][0]
    upload, download = proxy_log.access_entries(2)
    assert download["caller"] == "dashboards"
    assert (download["method"], download["path"]) == ("GET", ARTIFACTS + "/0/a.bin")
    assert (download["status"], download["bytes_out"]) == (307, 0)
    for leaked in (signature, "X-Amz-", "Amz-Credential", READER_TOKEN, WRITER_TOKEN):
        assert leaked not in proxy_log.text


def test_a_presigned_url_cannot_outlive_the_credentials_that_sign_it():
    # botocore refreshes refreshable credentials (assumed role, instance profile) before fewer
    # than this many seconds are left, and refuses to sign with them otherwise.
    assert MAX_ARTIFACT_REDIRECT_SECONDS < RefreshableCredentials._mandatory_refresh_timeout


@pytest.mark.parametrize(
    "changes, variable",
    [
        ({REDIRECT: "yes"}, REDIRECT),
        ({REDIRECT: "1"}, REDIRECT),
        (
            {REDIRECT: "true", "MLFLOW_PROXY_ARTIFACT_STORE_URI": None},
            "MLFLOW_PROXY_ARTIFACT_STORE_URI",
        ),
        ({REDIRECT: "true", SECONDS: "0"}, SECONDS),
        ({REDIRECT: "true", SECONDS: "1.5"}, SECONDS),
        ({REDIRECT: "true", SECONDS: str(MAX_ARTIFACT_REDIRECT_SECONDS + 1)}, SECONDS),
        ({SECONDS: "3600"}, SECONDS),  # checked even while the redirect is off
    ],
)
def test_a_bad_setting_stops_start_up_naming_it(changes, variable):
    environ = {**BASE, **changes}
    environ = {name: value for name, value in environ.items() if value is not None}
    with pytest.raises(ConfigError) as error:
        load_config(environ)
    assert variable in str(error.value)


@pytest.mark.parametrize(
    "changes, seconds",
    [
        ({REDIRECT: "true"}, DEFAULT_ARTIFACT_REDIRECT_SECONDS),
        ({REDIRECT: " TRUE ", SECONDS: "300"}, 300),
        ({REDIRECT: "false", SECONDS: "300"}, None),
        ({REDIRECT: ""}, None),
    ],
)
def test_accepted_settings(changes, seconds):
    assert load_config({**BASE, **changes}).artifact_redirect_seconds == seconds
