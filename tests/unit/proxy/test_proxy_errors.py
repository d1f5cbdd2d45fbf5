"""Errors leave as MLflow JSON, and the MLflow client reads them as the errors they are."""

import pytest
import requests
from flask import Flask
from mlflow.exceptions import RestException
from mlflow.protos.databricks_pb2 import ErrorCode

from mlflow_proxy import errors
from proxy_support import WRITER


@pytest.mark.parametrize(
    "error_class, status",
    [
        (errors.Unauthenticated, 401),
        (errors.PermissionDenied, 403),
        (errors.EndpointNotFound, 404),
        (errors.InvalidRequest, 400),
        (errors.BodyTooLarge, 413),
        (errors.UpstreamUnreachable, 502),
        (errors.CredentialsUnavailable, 503),
        (errors.UpstreamTimeout, 504),
    ],
)
def test_every_error_code_is_one_the_mlflow_client_knows(error_class, status):
    assert error_class.status == status
    exception = RestException({"error_code": error_class.error_code, "message": "m"})
    assert exception.error_code == error_class.error_code
    assert ErrorCode.Value(error_class.error_code)


def test_wrong_method_is_a_json_405(proxy, upstream):
    response = requests.request("TRACE", proxy + "/api/2.0/mlflow/runs/get", headers=WRITER)
    assert response.status_code == 405
    assert set(response.json()) == {"error_code", "message"}
    assert upstream.requests == []


def test_query_that_is_not_utf8_is_a_json_400(proxy, upstream):
    response = requests.get(proxy + "/api/2.0/mlflow/runs/get?run_id=%FF", headers=WRITER)
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert upstream.requests == []


def test_unexpected_failure_is_a_json_500_and_logged(proxy_log):
    app = Flask(__name__)
    errors.register_error_handler(app)

    @app.get("/boom")
    def boom():
        raise RuntimeError("a bug")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.json == {
        "error_code": "INTERNAL_ERROR",
        "message": "The proxy failed; see its log.",
    }
    assert "Unexpected error" in proxy_log.text  # with the traceback, which the caller never sees
