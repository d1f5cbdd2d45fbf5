"""GET /ui: a fresh presigned MLflow UI URL from SageMaker's control plane.

PresignedUi is checked against botocore's Stubber, which validates each call against the
sagemaker service model as the service would; the route runs in the real app, with a recording
server standing where api.sagemaker.<region>.amazonaws.com is (AWS_ENDPOINT_URL_SAGEMAKER).
"""

import json

import botocore.session
import pytest
import requests
from botocore.stub import Stubber
from werkzeug.wrappers import Response

from mlflow_proxy.config import load_config
from mlflow_proxy.errors import AwsRefused
from mlflow_proxy.ui import URL_LIFETIME_SECONDS, PresignedUi
from proxy_support import APP_ARN, READER, READER_TOKEN, TOKENS_JSON, TRACKING_ARN, WRITER, WRITER_TOKEN

UI_URL = "https://t-abc123.us-west-2.experiments.sagemaker.aws/auth?authToken=eyJ.signed"


@pytest.fixture
def stubbed_sagemaker():
    client = botocore.session.Session().create_client(
        "sagemaker", region_name="us-west-2", aws_access_key_id="k", aws_secret_access_key="s"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _ui(arn, client):
    config = load_config({"SM_MLFLOW_RESOURCE_ARN": arn, "MLFLOW_PROXY_TOKENS": TOKENS_JSON})
    return PresignedUi(config, lambda: client)


def test_a_tracking_server_url_is_asked_for_by_the_servers_name(stubbed_sagemaker):
    client, stubber = stubbed_sagemaker
    stubber.add_response(
        "create_presigned_mlflow_tracking_server_url",
        {"AuthorizedUrl": UI_URL},
        {"TrackingServerName": "test-server", "ExpiresInSeconds": URL_LIFETIME_SECONDS},
    )
    assert _ui(TRACKING_ARN, client).url() == UI_URL


def test_an_mlflow_app_url_is_asked_for_by_the_apps_arn(stubbed_sagemaker):
    client, stubber = stubbed_sagemaker
    stubber.add_response(
        "create_presigned_mlflow_app_url",
        {"AuthorizedUrl": UI_URL},
        {"Arn": APP_ARN, "ExpiresInSeconds": URL_LIFETIME_SECONDS},
    )
    assert _ui(APP_ARN, client).url() == UI_URL


def test_a_refusal_by_sagemaker_names_its_error_code(stubbed_sagemaker):
    client, stubber = stubbed_sagemaker
    stubber.add_client_error(
        "create_presigned_mlflow_tracking_server_url",
        service_error_code="ResourceNotFound",
        service_message="Tracking server test-server not found",
        http_status_code=400,
    )
    with pytest.raises(AwsRefused, match="ResourceNotFound") as refused:
        _ui(TRACKING_ARN, client).url()
    assert (refused.value.status, refused.value.error_code) == (502, "INTERNAL_ERROR")


@pytest.fixture
def control_plane(upstream, aws_env):
    """The recording server answers as SageMaker's JSON 1.1 control plane."""
    aws_env.setenv("AWS_ENDPOINT_URL_SAGEMAKER", upstream.url)
    upstream.respond = lambda request: Response(
        json.dumps({"AuthorizedUrl": UI_URL}), content_type="application/x-amz-json-1.1"
    )
    return upstream


def test_an_authenticated_caller_is_redirected_to_a_fresh_url_each_time(proxy, control_plane):
    for visit in (1, 2):  # the URLs are single-use: one per visit
        answer = requests.get(proxy + "/ui", headers=WRITER, allow_redirects=False)
        assert answer.status_code == 302
        assert answer.headers["Location"] == UI_URL
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert len(control_plane.requests) == visit
    call = control_plane.last
    assert call.header("X-Amz-Target") == "SageMaker.CreatePresignedMlflowTrackingServerUrl"
    # Signed for SageMaker's control plane, in the resource's region, with the proxy's key.
    assert "/us-west-2/sagemaker/aws4_request" in call.header("Authorization")
    assert json.loads(call.body) == {
        "TrackingServerName": "test-server",
        "ExpiresInSeconds": URL_LIFETIME_SECONDS,
    }


def test_a_browser_is_prompted_for_basic_auth_and_signs_in_with_the_token(proxy, control_plane):
    anonymous = requests.get(proxy + "/ui", allow_redirects=False)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    assert anonymous.json()["error_code"] == "UNAUTHENTICATED"
    wrong = requests.get(proxy + "/ui", auth=("me", "not-a-token-at-all"), allow_redirects=False)
    assert wrong.status_code == 401
    assert control_plane.requests == []
    signed_in = requests.get(proxy + "/ui", auth=("anyone", WRITER_TOKEN), allow_redirects=False)
    assert (signed_in.status_code, signed_in.headers["Location"]) == (302, UI_URL)


def test_a_read_only_token_does_not_open_a_ui_that_can_write(proxy, control_plane):
    for headers, auth in [(READER, None), ({}, ("dashboards", READER_TOKEN))]:
        refused = requests.get(proxy + "/ui", headers=headers, auth=auth, allow_redirects=False)
        assert refused.status_code == 403
        assert refused.json()["error_code"] == "PERMISSION_DENIED"
    assert control_plane.requests == []


def test_the_app_flavour_asks_for_the_app_url(start_proxy, proxy_env, control_plane):
    proxy = start_proxy({**proxy_env, "SM_MLFLOW_RESOURCE_ARN": APP_ARN})
    answer = requests.get(proxy + "/ui", headers=WRITER, allow_redirects=False)
    assert (answer.status_code, answer.headers["Location"]) == (302, UI_URL)
    assert control_plane.last.header("X-Amz-Target") == "SageMaker.CreatePresignedMlflowAppUrl"
    assert "/eu-west-1/sagemaker/aws4_request" in control_plane.last.header("Authorization")
    assert json.loads(control_plane.last.body)["Arn"] == APP_ARN


def test_options_on_ui_is_not_answered_by_flask(proxy):
    answer = requests.options(proxy + "/ui")
    assert answer.status_code == 405
    assert answer.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert "Allow" not in answer.headers or "OPTIONS" not in answer.headers["Allow"]


def test_the_root_sends_a_browser_on_to_the_ui(proxy, control_plane):
    # Where the MLflow client's "View run at <tracking URI>/#/..." links land.
    answer = requests.get(proxy + "/", allow_redirects=False)
    assert (answer.status_code, answer.headers["Location"]) == (302, "/ui")
    assert control_plane.requests == []
