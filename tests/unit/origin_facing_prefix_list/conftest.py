import importlib

import boto3
import pytest
from botocore.stub import Stubber

from tests.unit.mlflow_app_resource.cloudformation_fakes import REGION, aws_environment, response_server  # noqa: F401 (fixtures)


@pytest.fixture
def ec2_stub(aws_environment):
    """An EC2 client whose calls Stubber checks against botocore's service model."""
    ec2 = boto3.client("ec2", region_name=REGION)
    with Stubber(ec2) as stub:
        yield ec2, stub
        stub.assert_no_pending_responses()


@pytest.fixture
def prefix_list_handler(monkeypatch, ec2_stub, response_server):
    """The real `app.handler`, with a stubbed client, trusting the response server, no Delete sleep."""
    app = importlib.import_module("origin_facing_prefix_list.app")
    helper = app.build_helper(ec2_stub[0], sleep_on_delete=0, ssl_verify=str(response_server.cert_path))
    monkeypatch.setattr(app, "helper", helper)
    return app
