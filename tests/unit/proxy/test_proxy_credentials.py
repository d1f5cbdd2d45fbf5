"""Signing credentials: the default chain, or an assumed role cached for its lifetime, and the
read-only role read-only callers' requests are signed with.

A small fake STS (the AssumeRole query API, as botocore's service model describes its answer)
counts the calls; botocore reaches it through AWS_ENDPOINT_URL_STS, as on a real machine.
"""

import datetime
from urllib.parse import parse_qs

import pytest
import requests
from werkzeug.wrappers import Request, Response

from proxy_support import ACCESS_KEY, READER, WRITER, serve_in_thread

ROLE_ARN = "arn:aws:iam::123456789012:role/mlflow-proxy-signer"
ASSUMED_KEY = "ASIAFAKEASSUMEDKEY01"
ASSUMED_TOKEN = "fake-session-token-for-the-assumed-role"
READ_ONLY_ROLE_ARN = "arn:aws:iam::123456789012:role/mlflow-proxy-reader"
READ_ONLY_KEY = "ASIAFAKEREADONLYKEY1"


class FakeSts:
    def __init__(self, lifetime=datetime.timedelta(hours=1), status=200):
        self.calls = []
        self.lifetime = lifetime
        self.status = status

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.calls.append(parse_qs(request.get_data(as_text=True)))
        if self.status != 200:
            body = (
                '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                "<Type>Sender</Type><Code>AccessDenied</Code><Message>not allowed</Message>"
                "</Error><RequestId>r-1</RequestId></ErrorResponse>"
            )
            return Response(body, status=self.status, content_type="text/xml")(
                environ, start_response
            )
        expiration = datetime.datetime.now(datetime.timezone.utc) + self.lifetime
        key = READ_ONLY_KEY if self.calls[-1]["RoleArn"] == [READ_ONLY_ROLE_ARN] else ASSUMED_KEY
        body = f"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>{key}</AccessKeyId>
      <SecretAccessKey>fake-assumed-secret-key</SecretAccessKey>
      <SessionToken>{ASSUMED_TOKEN}</SessionToken>
      <Expiration>{expiration.strftime("%Y-%m-%dT%H:%M:%SZ")}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/mlflow-proxy-signer/mlflow-proxy</Arn>
      <AssumedRoleId>AROAFAKE:mlflow-proxy</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>
</AssumeRoleResponse>"""
        return Response(body, content_type="text/xml")(environ, start_response)


@pytest.fixture
def fake_sts(aws_env):
    sts = FakeSts()
    url, stop = serve_in_thread(sts)
    aws_env.setenv("AWS_ENDPOINT_URL_STS", url)
    yield sts
    stop()


def test_default_chain_signs_with_its_own_key(proxy, upstream):
    requests.get(proxy + "/api/2.0/mlflow/runs/get", headers=WRITER)
    assert f"Credential={ACCESS_KEY}/" in upstream.last.header("Authorization")
    assert upstream.last.header("X-Amz-Security-Token") is None


def test_role_is_assumed_once_across_many_requests(fake_sts, start_proxy, proxy_env, upstream):
    url = start_proxy({**proxy_env, "SM_MLFLOW_ROLE_ARN": ROLE_ARN})
    for _ in range(10):
        assert requests.get(url + "/api/2.0/mlflow/runs/get", headers=WRITER).status_code == 200
    assert len(fake_sts.calls) == 1
    call = fake_sts.calls[0]
    assert call["Action"] == ["AssumeRole"]
    assert call["RoleArn"] == [ROLE_ARN]
    assert len(upstream.requests) == 10
    for sent in upstream.requests:
        assert f"Credential={ASSUMED_KEY}/" in sent.header("Authorization")
        assert sent.header("X-Amz-Security-Token") == ASSUMED_TOKEN


def test_credentials_about_to_expire_are_refreshed(fake_sts, start_proxy, proxy_env, upstream):
    # botocore refreshes when fewer than 10 minutes remain: these are always due.
    fake_sts.lifetime = datetime.timedelta(minutes=5)
    url = start_proxy({**proxy_env, "SM_MLFLOW_ROLE_ARN": ROLE_ARN})
    assert len(fake_sts.calls) == 1  # resolved at start-up, before gunicorn forks its workers
    for _ in range(3):
        assert requests.get(url + "/api/2.0/mlflow/runs/get", headers=WRITER).status_code == 200
    assert len(fake_sts.calls) == 1 + 3


def test_sts_refusal_is_503_and_the_next_request_tries_again(
    fake_sts, start_proxy, proxy_env, upstream
):
    fake_sts.status = 403
    url = start_proxy({**proxy_env, "SM_MLFLOW_ROLE_ARN": ROLE_ARN})
    response = requests.get(url + "/api/2.0/mlflow/runs/get", headers=WRITER)
    assert response.status_code == 503
    assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert upstream.requests == []

    fake_sts.status = 200
    assert requests.get(url + "/api/2.0/mlflow/runs/get", headers=WRITER).status_code == 200


def test_no_credentials_at_all_is_503(start_proxy, proxy_env, upstream, aws_env):
    aws_env.delenv("AWS_ACCESS_KEY_ID")
    aws_env.delenv("AWS_SECRET_ACCESS_KEY")
    url = start_proxy(proxy_env)
    response = requests.get(url + "/api/2.0/mlflow/runs/get", headers=WRITER)
    assert response.status_code == 503
    assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert upstream.requests == []


def test_the_proxys_own_aws_calls_use_the_same_assumed_role(
    fake_sts, start_proxy, proxy_env, upstream, aws_env
):
    # The recording upstream also stands in for SageMaker's control plane (/ui asks it).
    aws_env.setenv("AWS_ENDPOINT_URL_SAGEMAKER", upstream.url)
    upstream.respond = lambda request: Response(
        '{"AuthorizedUrl": "https://ui.example/x"}', content_type="application/x-amz-json-1.1"
    )
    url = start_proxy({**proxy_env, "SM_MLFLOW_ROLE_ARN": ROLE_ARN})
    requests.get(url + "/api/2.0/mlflow/runs/get", headers=WRITER)
    assert requests.get(url + "/ui", headers=WRITER, allow_redirects=False).status_code == 302
    assert len(fake_sts.calls) == 1  # one role, one cache, for signing and for the clients
    for sent in upstream.requests:
        assert f"Credential={ASSUMED_KEY}/" in sent.header("Authorization")
        assert sent.header("X-Amz-Security-Token") == ASSUMED_TOKEN


def test_read_only_callers_are_signed_with_the_read_only_role(
    fake_sts, start_proxy, proxy_env, upstream
):
    roles = {"SM_MLFLOW_ROLE_ARN": ROLE_ARN, "SM_MLFLOW_READ_ONLY_ROLE_ARN": READ_ONLY_ROLE_ARN}
    url = start_proxy({**proxy_env, **roles})
    # Both assumed at start-up, before gunicorn forks, each under its own session name.
    assert {c["RoleArn"][0]: c["RoleSessionName"][0] for c in fake_sts.calls} == {
        ROLE_ARN: "mlflow-proxy",
        READ_ONLY_ROLE_ARN: "mlflow-proxy-read-only",
    }
    for _ in range(3):
        assert requests.get(url + "/api/2.0/mlflow/runs/get", headers=READER).status_code == 200
        search = requests.post(url + "/api/2.0/mlflow/runs/search", json={}, headers=READER)
        assert search.status_code == 200
        assert requests.get(url + "/api/2.0/mlflow/runs/get", headers=WRITER).status_code == 200
    signed_with = [
        sent.header("Authorization").split("Credential=")[1][:20] for sent in upstream.requests
    ]
    assert signed_with == [READ_ONLY_KEY, READ_ONLY_KEY, ASSUMED_KEY] * 3
    assert len(fake_sts.calls) == 2  # once per role, not per request


def test_the_read_only_role_is_assumed_from_the_default_chain_too(
    fake_sts, start_proxy, proxy_env, upstream
):
    url = start_proxy({**proxy_env, "SM_MLFLOW_READ_ONLY_ROLE_ARN": READ_ONLY_ROLE_ARN})
    requests.get(url + "/api/2.0/mlflow/runs/get", headers=READER)
    requests.get(url + "/api/2.0/mlflow/runs/get", headers=WRITER)
    reader_request, writer_request = upstream.requests
    assert f"Credential={READ_ONLY_KEY}/" in reader_request.header("Authorization")
    assert f"Credential={ACCESS_KEY}/" in writer_request.header("Authorization")
    assert writer_request.header("X-Amz-Security-Token") is None
