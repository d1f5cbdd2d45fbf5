import importlib

import boto3
import pytest
from botocore.stub import Stubber

from tests.unit.mlflow_app_resource.cloudformation_fakes import REGION, aws_environment, response_server  # noqa: F401 (fixtures)


class Clients:
    """EC2, EFS and SageMaker clients whose calls Stubber checks against botocore's service models."""

    def __init__(self):
        self.ec2 = boto3.client("ec2", region_name=REGION)
        self.efs = boto3.client("efs", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.stubs = [Stubber(self.ec2), Stubber(self.efs), Stubber(self.sagemaker)]
        self.ec2_stub, self.efs_stub, self.sagemaker_stub = self.stubs


@pytest.fixture
def clients(aws_environment):
    clients = Clients()
    for stub in clients.stubs:
        stub.activate()
    yield clients
    for stub in clients.stubs:
        stub.deactivate()
        stub.assert_no_pending_responses()


@pytest.fixture
def cleanup_handler(monkeypatch, clients, response_server):
    """The real `app.handler`, with stubbed clients, trusting the response server, no Delete sleep."""
    app = importlib.import_module("domain_cleanup.app")
    helper = app.build_helper(clients.ec2, clients.efs, clients.sagemaker, sleep_on_delete=0,
                              ssl_verify=str(response_server.cert_path))
    monkeypatch.setattr(app, "helper", helper)
    return app
