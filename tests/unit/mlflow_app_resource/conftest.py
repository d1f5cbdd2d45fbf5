import importlib

import boto3
import pytest
from botocore.stub import Stubber

from tests.unit.mlflow_app_resource.cloudformation_fakes import REGION, aws_environment, response_server  # noqa: F401 (fixtures)


@pytest.fixture
def sagemaker(aws_environment):
    """A real SageMaker client whose calls Stubber checks against botocore's service model."""
    client = boto3.client("sagemaker", region_name=REGION)
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def mlflow_app_handler(monkeypatch, sagemaker, response_server):
    """The real `app.handler`, its helper built with the stubbed SageMaker client, a helper that trusts
    the response server's certificate, and no sleep before answering a Delete."""
    app = importlib.import_module("mlflow_app_resource.app")
    helper = app.build_helper(sagemaker[0], sleep_on_delete=0,
                              ssl_verify=str(response_server.cert_path))
    monkeypatch.setattr(app, "helper", helper)
    return app
