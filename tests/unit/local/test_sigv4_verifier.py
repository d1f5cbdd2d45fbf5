import datetime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from local import fixed_credentials
from local.sigv4_verifier import (
    SignatureError,
    WireRequest,
    canonical_query,
    canonical_request,
    canonical_uri,
    parse_authorization,
    verify,
)
from tests.unit.local.signed_wire import BASE_CREDENTIALS


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("experiment_name=my+exp", "experiment_name=my%20exp"),
        ("experiment_name=my%20exp", "experiment_name=my%20exp"),
        ("experiment_name=a%2Bb", "experiment_name=a%2Bb"),
        ("b=2&a=1&a=0", "a=0&a=1&b=2"),
        ("key=caf%C3%A9&flag", "flag=&key=caf%C3%A9"),
        ("", ""),
    ],
)
def test_canonical_query_decodes_as_form_data_and_reencodes_with_percent_20(raw, expected):
    assert canonical_query(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("/", "/"),
        ("/api/2.0/mlflow/runs/get", "/api/2.0/mlflow/runs/get"),
        ("/a/./b/../c/", "/a/c/"),
        ("/path%20with%20space", "/path%2520with%2520space"),
    ],
)
def test_canonical_uri_encodes_the_sent_path_once_more(raw, expected):
    assert canonical_uri(raw) == expected


def botocore_signed(url, body=b"", service="sagemaker"):
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
    )
    request.headers["X-Amz-Content-SHA256"] = SigV4Auth(
        BASE_CREDENTIALS, service, "us-east-1"
    ).payload(request)
    SigV4Auth(BASE_CREDENTIALS, service, "us-east-1").add_auth(request)
    return request


def as_wire(request, body_sha256):
    headers = {name.lower(): value for name, value in request.headers.items()}
    headers["host"] = "example.test"
    path, _, query = request.url.split("example.test", 1)[1].partition("?")
    return WireRequest(request.method, path, query, headers, body_sha256)


def test_canonical_request_matches_botocore_for_a_percent_20_query():
    request = botocore_signed("http://example.test/api/2.0/mlflow/x?b=two%20words&a=1", b"{}")
    signer = SigV4Auth(BASE_CREDENTIALS, "sagemaker", "us-east-1")
    signed_headers = parse_authorization(request.headers["Authorization"]).signed_headers
    wire = as_wire(request, request.headers["X-Amz-Content-SHA256"])
    del request.headers["Authorization"]  # botocore's view of the request as it signed it

    assert canonical_request(wire, signed_headers, wire.body_sha256) == signer.canonical_request(
        request
    )


def test_verify_returns_the_authorization_of_a_good_signature():
    request = botocore_signed("http://example.test/api/2.0/mlflow/x", b"{}")
    wire = as_wire(request, request.headers["X-Amz-Content-SHA256"])
    authorization = verify(
        wire,
        service="sagemaker",
        regions={"us-east-1"},
        find_secret=lambda key, token: fixed_credentials.SECRET_ACCESS_KEY,
        now=datetime.datetime.now(datetime.timezone.utc),
    )
    assert authorization.access_key_id == fixed_credentials.ACCESS_KEY_ID
    assert "host" in authorization.signed_headers


@pytest.mark.parametrize(
    "header, error_type",
    [
        (None, "MissingAuthenticationTokenException"),
        ("AWS4-HMAC-SHA1 Credential=x", "IncompleteSignatureException"),
        (
            "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/sagemaker/aws4_request",
            "IncompleteSignatureException",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIA/20260101, SignedHeaders=host, Signature=ab",
            "IncompleteSignatureException",
        ),
    ],
)
def test_malformed_authorization_is_refused(header, error_type):
    with pytest.raises(SignatureError) as raised:
        parse_authorization(header)
    assert raised.value.error_type == error_type
