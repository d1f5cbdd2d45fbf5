"""The signature is recomputed here with botocore from what arrived on the wire; the SageMaker
emulator in local/ checks it independently of botocore."""

import datetime
import hashlib
import http.client
import re
from urllib.parse import urlsplit

import botocore.auth
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from mlflow_proxy.signing import canonical_query, host_header, sign
from proxy_support import ACCESS_KEY, APP_ARN, SECRET_KEY, TRACKING_ARN, WRITER

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[^,]+), Signature=(?P<sig>[0-9a-f]{64})$"
)


def _check_signature(recorded, upstream_url):
    """Recompute the signature of a recorded request; returns the parsed Authorization."""
    authorization = _AUTHORIZATION.match(recorded.header("Authorization"))
    assert authorization, recorded.header("Authorization")
    signed_names = authorization["signed"].split(";")
    request = AWSRequest(
        method=recorded.method,
        url=upstream_url + recorded.raw_uri,
        headers={name: recorded.header(name) for name in signed_names},
    )
    request.context["timestamp"] = recorded.header("X-Amz-Date")
    signer = SigV4Auth(
        Credentials(ACCESS_KEY, SECRET_KEY), authorization["service"], authorization["region"]
    )
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    assert authorization["sig"] == expected
    assert authorization["key"] == ACCESS_KEY
    return authorization, signed_names


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("experiment_name=my+exp", "experiment_name=my%20exp"),
        ("experiment_name=my%20exp", "experiment_name=my%20exp"),
        ("name=a%2Bb", "name=a%2Bb"),
        ("name=a+%2B+b&x=1", "name=a%20%2B%20b&x=1"),
        ("filter=name%3D%27x%27&max_results=10", "filter=name%3D%27x%27&max_results=10"),
        ("path=dir/sub&empty=", "path=dir%2Fsub&empty="),
        ("k=%E2%9C%93", "k=%E2%9C%93"),
        ("a=1&a=2", "a=1&a=2"),
        # Plain name=value pairs are returned as they are, without being parsed.
        ("run_id=0a1B-2.c_3~&max_results=10", "run_id=0a1B-2.c_3~&max_results=10"),
        ("a=&b=1", "a=&b=1"),
        # Not plain: parsed and re-encoded.
        ("a&b=1", "a=&b=1"),
        ("=x", "=x"),
        ("a=1&&b=2", "a=1&b=2"),
    ],
)
def test_query_is_reencoded_the_way_aws_canonicalises_it(raw, expected):
    assert canonical_query(raw) == expected


@pytest.mark.parametrize(
    "endpoint, expected",
    [
        ("https://MLflow.SageMaker.us-east-1.app.aws", "mlflow.sagemaker.us-east-1.app.aws"),
        ("https://example.com:443/base", "example.com"),
        ("http://127.0.0.1:80", "127.0.0.1"),
        ("http://127.0.0.1:8443", "127.0.0.1:8443"),
        ("https://example.com:80", "example.com:80"),
        ("http://[::1]:9000", "[::1]:9000"),
    ],
)
def test_host_header_is_the_one_botocore_would_sign(endpoint, expected):
    from botocore.auth import _host_from_url  # botocore's own rule, private: checked, not used

    assert host_header(endpoint) == expected == _host_from_url(endpoint)


def test_query_that_is_not_utf8_is_refused():
    with pytest.raises(UnicodeDecodeError):
        canonical_query("k=%FF")


def test_request_is_signed_for_the_tracking_server(proxy, upstream):
    requests.post(proxy + "/api/2.0/mlflow/runs/search", headers=WRITER, data=b'{"a": 1}')
    authorization, signed = _check_signature(upstream.last, upstream.url)
    assert authorization["service"] == "sagemaker-mlflow"
    assert authorization["region"] == "us-west-2"
    assert "x-mlflow-sm-tracking-server-arn" in signed
    assert upstream.last.header("x-mlflow-sm-tracking-server-arn") == TRACKING_ARN
    assert "x-amz-content-sha256" in signed
    assert upstream.last.header("X-Amz-Content-SHA256") == hashlib.sha256(b'{"a": 1}').hexdigest()


def test_an_endpoint_url_with_a_path_is_sent_and_signed_with_it(start_proxy, proxy_env, upstream):
    url = start_proxy({**proxy_env, "SM_MLFLOW_ENDPOINT_URL": upstream.url + "/base"})
    response = requests.get(url + "/api/2.0/mlflow/experiments/get?experiment_id=1", headers=WRITER)
    assert response.status_code == 200
    assert upstream.last.raw_uri == "/base/api/2.0/mlflow/experiments/get?experiment_id=1"
    _check_signature(upstream.last, upstream.url)


def test_request_is_signed_for_the_mlflow_app(start_proxy, proxy_env, upstream):
    url = start_proxy({**proxy_env, "SM_MLFLOW_RESOURCE_ARN": APP_ARN})
    requests.get(url + "/api/2.0/mlflow/experiments/get?experiment_id=1", headers=WRITER)
    authorization, signed = _check_signature(upstream.last, upstream.url)
    assert authorization["service"] == "sagemaker"
    assert authorization["region"] == "eu-west-1"
    assert "x-sm-mlflow-app-arn" in signed
    assert upstream.last.header("x-sm-mlflow-app-arn") == APP_ARN
    assert upstream.last.header("x-mlflow-sm-tracking-server-arn") is None


def test_region_variable_overrides_the_arns_region(start_proxy, proxy_env, upstream):
    url = start_proxy({**proxy_env, "SM_MLFLOW_AWS_REGION": "us-east-2"})
    requests.get(url + "/api/2.0/mlflow/runs/get", headers=WRITER)
    authorization, _ = _check_signature(upstream.last, upstream.url)
    assert authorization["region"] == "us-east-2"


def test_plus_travels_and_is_signed_as_percent_20_and_a_literal_plus_stays(proxy, upstream):
    # What MLflow's client sends for get_experiment_by_name("my exp + more").
    parts = urlsplit(proxy)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(
            "GET",
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name=my+exp+%2B+more",
            headers={**WRITER, "Connection": "keep-alive"},
        )
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    sent = upstream.last
    assert sent.raw_uri == (
        "/api/2.0/mlflow/experiments/get-by-name?experiment_name=my%20exp%20%2B%20more"
    )
    _, signed = _check_signature(sent, upstream.url)
    assert "connection" not in signed


def test_path_with_special_characters_is_signed_as_sent(proxy, upstream):
    requests.get(proxy + "/api/2.0/mlflow-artifacts/artifacts/dir/a%20b%2Bc.txt", headers=WRITER)
    assert upstream.last.raw_uri == "/api/2.0/mlflow-artifacts/artifacts/dir/a%20b%2Bc.txt"
    _check_signature(upstream.last, upstream.url)


def test_the_checker_rejects_a_tampered_signature(proxy, upstream):
    """Guards the checker above: it must be able to fail."""
    requests.get(proxy + "/api/2.0/mlflow/runs/get", headers=WRITER)
    recorded = upstream.last
    signature = _AUTHORIZATION.match(recorded.header("Authorization"))["sig"]
    tampered = f"{int(signature, 16) ^ 1:064x}"
    recorded.headers = [
        (name, value.replace(signature, tampered)) for name, value in recorded.headers
    ]
    with pytest.raises(AssertionError):
        _check_signature(recorded, upstream.url)


def test_signatures_across_midnight_and_a_new_secret_are_the_ones_botocore_makes(monkeypatch):
    """signing._SigV4Auth derives the signing key once per secret, day, region and service:
    each signature must still be botocore's own, the day after and with a rotated secret."""
    url = "https://mlflow.example.com/api/2.0/mlflow/experiments/get?experiment_id=1"
    host = {"Host": "mlflow.example.com"}
    body_sha256 = hashlib.sha256(b"").hexdigest()
    midnight = datetime.datetime.combine(
        datetime.date.today() + datetime.timedelta(days=1), datetime.time()
    )
    for secret in (SECRET_KEY, SECRET_KEY + "-rotated"):
        credentials = ReadOnlyCredentials(ACCESS_KEY, secret, None)
        for now in (midnight - datetime.timedelta(seconds=1), midnight):
            monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now)
            for service, region in (("sagemaker-mlflow", "us-east-1"), ("sagemaker", "eu-west-1")):
                ours = sign("GET", url, host, body_sha256, credentials, service, region)
                expected = AWSRequest(
                    method="GET", url=url, headers={**host, "X-Amz-Content-SHA256": body_sha256}
                )
                SigV4Auth(credentials, service, region).add_auth(expected)
                assert ours["X-Amz-Date"] == now.strftime("%Y%m%dT%H%M%SZ")
                assert ours["Authorization"] == expected.headers["Authorization"]
