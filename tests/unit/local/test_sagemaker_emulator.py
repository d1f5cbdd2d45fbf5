import datetime
import json

import pytest
from botocore.credentials import Credentials

from local import emulated_sts, fixed_credentials
from local.sagemaker_emulator import SageMakerEmulator
from tests.unit.local.signed_wire import send, serving, sign, signed_for


def assert_refused(result, error_type, message_part):
    status, headers, body = result
    assert status == 403, body
    assert headers["x-amzn-ErrorType"] == error_type
    assert headers["Content-Type"] == "application/json"
    assert message_part in json.loads(body)["message"]


def test_correctly_signed_request_is_forwarded_without_sigv4_headers(emulator, mlflow_double):
    status, _, body = send(signed_for(emulator, body=b'{"max_results": 7}'))

    assert status == 200, body
    assert json.loads(body) == {"ok": True}
    forwarded = mlflow_double.received[-1]
    assert forwarded["raw_uri"] == "/api/2.0/mlflow/experiments/search"
    assert forwarded["body"] == b'{"max_results": 7}'
    assert "authorization" not in forwarded["headers"]
    assert emulator.mode.routing_header not in forwarded["headers"]


def test_wrong_service_name_is_refused(emulator):
    other = "sagemaker" if emulator.mode.service == "sagemaker-mlflow" else "sagemaker-mlflow"
    assert_refused(
        send(signed_for(emulator, service=other)),
        "InvalidSignatureException",
        f"correct service: '{emulator.mode.service}'",
    )


def test_wrong_region_is_refused(emulator):
    assert_refused(
        send(signed_for(emulator, region="eu-west-1")),
        "InvalidSignatureException",
        "not 'eu-west-1'",
    )


def test_missing_routing_header_is_refused(emulator):
    request = sign(
        emulator.url + "/api/2.0/mlflow/experiments/search",
        method="POST",
        body=b"{}",
        service=emulator.mode.service,
    )
    assert_refused(send(request), "AccessDeniedException", emulator.mode.routing_header)


def test_unsigned_routing_header_is_refused(emulator):
    request = sign(
        emulator.url + "/api/2.0/mlflow/experiments/search",
        method="POST",
        body=b"{}",
        service=emulator.mode.service,
    )
    result = send(request, extra_headers={emulator.mode.routing_header: emulator.mode.resource_arn})
    assert_refused(result, "AccessDeniedException", "must be signed")


def test_routing_header_with_another_arn_is_refused(emulator):
    other_arn = emulator.mode.resource_arn + "-other"
    assert_refused(
        send(signed_for(emulator, routing_arn=other_arn)), "AccessDeniedException", other_arn
    )


def test_query_with_a_signed_raw_plus_is_refused(emulator):
    request = signed_for(
        emulator,
        "/api/2.0/mlflow/experiments/get-by-name?experiment_name=my+exp",
        method="GET",
        body=b"",
    )
    assert_refused(send(request), "InvalidSignatureException", "experiment_name=my%20exp")


def test_query_with_percent_20_passes_and_is_forwarded_as_sent(emulator, mlflow_double):
    path = "/api/2.0/mlflow/experiments/get-by-name?experiment_name=my%20exp%2Bx%C3%A9"
    status, _, body = send(signed_for(emulator, path, method="GET", body=b""))

    assert status == 200, body
    assert mlflow_double.received[-1]["raw_uri"] == path


def test_tampered_body_is_refused(emulator):
    request = signed_for(emulator, body=b'{"max_results": 1}')
    result = send(request, body=b'{"max_results": 9}')
    assert_refused(result, "InvalidSignatureException", "x-amz-content-sha256")


def test_tampered_body_without_payload_hash_header_is_refused(emulator):
    request = signed_for(emulator, body=b'{"max_results": 1}')
    result = send(request, body=b'{"max_results": 9}', drop_headers={"x-amz-content-sha256"})
    assert_refused(result, "InvalidSignatureException", "signature we calculated does not match")


@pytest.mark.parametrize("skew", [datetime.timedelta(minutes=6), datetime.timedelta(minutes=-6)])
def test_x_amz_date_more_than_five_minutes_off_is_refused(mode, mlflow_double, skew):
    def skewed_clock():
        return datetime.datetime.now(datetime.timezone.utc) + skew

    app = SageMakerEmulator(mode, mlflow_double.url, clock=skewed_clock)
    with serving(app) as url:
        app.url = url
        result = send(signed_for(app))
    expected = "Signature expired" if skew > datetime.timedelta(0) else "Signature not yet current"
    assert_refused(result, "InvalidSignatureException", expected)


def test_unknown_access_key_is_refused(emulator):
    stranger = Credentials("AKIAUNKNOWN000000000", fixed_credentials.SECRET_ACCESS_KEY)
    assert_refused(
        send(signed_for(emulator, credentials=stranger)),
        "UnrecognizedClientException",
        "security token included in the request is invalid",
    )


def test_wrong_secret_is_refused(emulator):
    wrong = Credentials(fixed_credentials.ACCESS_KEY_ID, "not-the-secret")
    assert_refused(
        send(signed_for(emulator, credentials=wrong)),
        "InvalidSignatureException",
        "signature we calculated does not match",
    )


def test_missing_authorization_is_refused(emulator):
    result = send(signed_for(emulator), drop_headers={"authorization"})
    assert_refused(result, "MissingAuthenticationTokenException", "Missing Authentication Token")


def test_connection_header_signed_by_a_client_is_stripped_before_verifying(emulator):
    request = sign(
        emulator.url + "/api/2.0/mlflow/experiments/search",
        method="POST",
        body=b"{}",
        service=emulator.mode.service,
        headers={emulator.mode.routing_header: emulator.mode.resource_arn},
    )
    # botocore never signs Connection; smuggle it into SignedHeaders to show the service drops it.
    request.headers["Authorization"] = request.headers["Authorization"].replace(
        "SignedHeaders=", "SignedHeaders=connection;"
    )
    result = send(request, extra_headers={"Connection": "close"})
    assert_refused(result, "InvalidSignatureException", "connection:\n")


def test_temporary_credentials_need_their_session_token(emulator, mlflow_double):
    now = datetime.datetime.now(datetime.timezone.utc)
    issued = emulated_sts.issue_credentials(900, now)
    with_token = Credentials(
        issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"]
    )
    without_token = Credentials(issued["AccessKeyId"], issued["SecretAccessKey"])

    assert send(signed_for(emulator, credentials=with_token))[0] == 200
    assert_refused(
        send(signed_for(emulator, credentials=without_token)),
        "UnrecognizedClientException",
        "security token",
    )
    forged = issued["SessionToken"][:-1] + ("0" if issued["SessionToken"][-1] != "0" else "1")
    assert_refused(
        send(
            signed_for(
                emulator,
                credentials=Credentials(issued["AccessKeyId"], issued["SecretAccessKey"], forged),
            )
        ),
        "UnrecognizedClientException",
        "security token",
    )


def test_expired_temporary_credentials_are_refused(emulator):
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    issued = emulated_sts.issue_credentials(900, long_ago)
    expired = Credentials(issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"])
    assert_refused(
        send(signed_for(emulator, credentials=expired)), "ExpiredTokenException", "expired"
    )


def test_unreachable_mlflow_is_a_503_json(mode):
    app = SageMakerEmulator(mode, "http://127.0.0.1:9")  # discard port: nothing listens
    with serving(app) as url:
        app.url = url
        status, headers, body = send(signed_for(app))
    assert status == 503
    assert headers["x-amzn-ErrorType"] == "ServiceUnavailableException"
    assert "unreachable" in json.loads(body)["message"]


def test_unsigned_security_token_is_refused(emulator):
    now = datetime.datetime.now(datetime.timezone.utc)
    issued = emulated_sts.issue_credentials(900, now)
    temporary = Credentials(issued["AccessKeyId"], issued["SecretAccessKey"])
    request = signed_for(emulator, credentials=temporary)
    result = send(request, extra_headers={"X-Amz-Security-Token": issued["SessionToken"]})
    assert_refused(result, "IncompleteSignatureException", "x-amz-security-token")


def role_credentials(role_arn):
    now = datetime.datetime.now(datetime.timezone.utc)
    issued = emulated_sts.issue_credentials(900, now, role_arn, "unit-test")
    return Credentials(issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"])


READ_ONLY = fixed_credentials.READ_ONLY_ROLE_ARN
CREATE_RUN = ("/api/2.0/mlflow/runs/create", b'{"experiment_id": "0"}')


@pytest.fixture(scope="module")
def tracking_emulator(mlflow_double):
    app = SageMakerEmulator("tracking", mlflow_double.url)
    with serving(app) as url:
        app.url = url
        yield app


def test_a_read_only_role_writing_to_a_tracking_server_gets_awss_403(
    tracking_emulator, mlflow_double
):
    received_before = len(mlflow_double.received)
    path, body = CREATE_RUN
    result = send(
        signed_for(tracking_emulator, path, body=body, credentials=role_credentials(READ_ONLY))
    )
    assert_refused(
        result,
        "AccessDeniedException",
        "User: arn:aws:sts::123456789012:assumed-role/mlflow-proxy-stand-in-read-only/unit-test "
        "is not authorized to perform: sagemaker-mlflow:CreateRun on resource: "
        f"{fixed_credentials.TRACKING_SERVER_ARN} because no identity-based policy allows the "
        "sagemaker-mlflow:CreateRun action",
    )
    assert len(mlflow_double.received) == received_before  # nothing reached MLflow


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/api/2.0/mlflow/runs/search", b"{}"),
        ("GET", "/api/2.0/mlflow/runs/get?run_id=r1", b""),
        ("GET", "/ajax-api/2.0/mlflow/traces/tr-1/info", b""),
    ],
)
def test_a_read_only_role_reads_a_tracking_server(tracking_emulator, method, path, body):
    request = signed_for(
        tracking_emulator, path, method=method, body=body, credentials=role_credentials(READ_ONLY)
    )
    assert send(request)[0] == 200


def test_a_call_with_no_documented_action_needs_every_action(tracking_emulator):
    # What AWS checks for these is undocumented; only sagemaker-mlflow:* surely allows them.
    path, body = "/api/3.0/mlflow/datasets/search", b"{}"
    refused = send(
        signed_for(tracking_emulator, path, body=body, credentials=role_credentials(READ_ONLY))
    )
    assert_refused(refused, "AccessDeniedException", "sagemaker-mlflow:UndocumentedAction")
    allowed = signed_for(
        tracking_emulator, path, body=body, credentials=role_credentials(fixed_credentials.ROLE_ARN)
    )
    assert send(allowed)[0] == 200


def test_the_read_write_role_and_the_long_term_key_may_write(tracking_emulator):
    path, body = CREATE_RUN
    for credentials in (role_credentials(fixed_credentials.ROLE_ARN), None):
        kwargs = {"credentials": credentials} if credentials else {}
        assert send(signed_for(tracking_emulator, path, body=body, **kwargs))[0] == 200


def test_an_mlflow_app_cannot_tell_a_read_only_role_from_a_writer(mlflow_double):
    # sagemaker:CallMlflowAppApi is the one action for every call: IAM lets the write through.
    app = SageMakerEmulator("serverless", mlflow_double.url)
    path, body = CREATE_RUN
    with serving(app) as url:
        app.url = url
        result = send(signed_for(app, path, body=body, credentials=role_credentials(READ_ONLY)))
    assert result[0] == 200
