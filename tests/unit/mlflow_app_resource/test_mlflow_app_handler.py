"""Recorded CloudFormation events through the real handler, answered over TLS to a loopback server.

SageMaker, EventBridge and Lambda (crhelper's polling) are Stubber-checked clients; the events
crhelper schedules for its re-invocations are captured from its put_targets call and fed back in.
"""

import json
from pathlib import Path

import pytest

from tests.unit.mlflow_app_resource.cloudformation_fakes import LambdaContext, PollingStubs, load_event

HERE = Path(__file__).parent
ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-app/app-a1b2c3d4e5f6"
NEW_ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-app/app-0f9e8d7c6b5a"
OWNER_TAGS = [
    {"Key": "mlflow-proxy:cloudformation-stack-id",
     "Value": "arn:aws:cloudformation:us-east-1:123456789012:stack/mlflow-proxy-MlflowStack-1T2ZQ3ABCDEF/"
              "5b1c2d30-8f4e-11ef-9a2b-0a1b2c3d4e5f"},
    {"Key": "mlflow-proxy:cloudformation-logical-id", "Value": "MlflowApp"},
]


def described(status, arn=ARN, name="mlflow-proxy", **fields):
    return {"Arn": arn, "Name": name, "Status": status, "MlflowVersion": "3.4.0", **fields}


def create_parameters(event, name="mlflow-proxy"):
    properties = event["ResourceProperties"]
    return {
        "Name": name,
        "ArtifactStoreUri": properties["ArtifactStoreUri"],
        "RoleArn": properties["RoleArn"],
        "ModelRegistrationMode": "AutoModelRegistrationEnabled",
        "WeeklyMaintenanceWindowStart": "Tue:03:30",
        "AccountDefaultStatus": "DISABLED",
        "DefaultDomainIdList": ["d-abcdef123456"],
        "Tags": properties["Tags"] + OWNER_TAGS,
    }


def update_parameters(event):
    """UpdateMlflowApp's parameters for the event's whole desired configuration."""
    properties = event["ResourceProperties"]
    return {"Arn": event["PhysicalResourceId"],
            **{name: properties[name] for name in ("Name", "ArtifactStoreUri", "ModelRegistrationMode",
                                                   "WeeklyMaintenanceWindowStart", "DefaultDomainIdList",
                                                   "AccountDefaultStatus")}}


ROLE_NOT_ASSUMABLE = "SageMaker is unable to perform: sts:AssumeRole on the role. Check the trust relationship."


class Run:
    """Drives one CloudFormation request through the handler, first call and polls."""

    def __init__(self, app, polling, server):
        self.app, self.polling, self.server = app, polling, server
        self.poll_input = None

    def start(self, event):
        self.poll_input = self.polling.expect_setup()
        self.app.handler(event, LambdaContext())
        assert self.server.responses == [], "answered before the work was finished"

    def poll(self, last=False):
        # EventBridge delivers the scheduled event afresh each time.
        event = json.loads(self.poll_input.value)
        assert event["CrHelperPoll"] is True
        if last:
            self.polling.expect_teardown(event["CrHelperPermission"])
        self.app.handler(event, LambdaContext())
        if not last:
            assert self.server.responses == [], "answered before the work was finished"

    def response(self, event):
        self.polling.assert_done()
        [response] = self.server.responses
        body = response["body"]
        for key in ("StackId", "RequestId", "LogicalResourceId"):
            assert body[key] == event[key]
        return body


@pytest.fixture
def run(mlflow_app_handler, response_server):
    with PollingStubs(mlflow_app_handler.helper, "MlflowApp") as polling:
        yield Run(mlflow_app_handler, polling, response_server)


def attributes(arn=ARN, name="mlflow-proxy"):
    return {"Arn": arn, "Name": name, "MlflowVersion": "3.4.0",
            "EndpointUrl": "https://mlflow.sagemaker.us-east-1.app.aws"}


def test_create_succeeds_with_the_app_arn_and_attributes_once_created(run, sagemaker, response_server):
    _, stub = sagemaker
    event = load_event(HERE, "create", response_server.url)
    stub.add_response("list_mlflow_apps", {"Summaries": []}, {})
    stub.add_response("create_mlflow_app", {"Arn": ARN}, create_parameters(event))
    run.start(event)

    stub.add_response("describe_mlflow_app", described("Creating"), {"Arn": ARN})
    run.poll()
    stub.add_response("describe_mlflow_app", described("Created"), {"Arn": ARN})
    run.poll(last=True)

    body = run.response(event)
    assert body["Status"] == "SUCCESS"
    assert body["PhysicalResourceId"] == ARN
    assert body["Data"] == attributes()


def test_a_failed_create_fails_and_reports_the_app_so_the_rollback_deletes_it(run, sagemaker, response_server):
    _, stub = sagemaker
    event = load_event(HERE, "create", response_server.url)
    stub.add_response("list_mlflow_apps", {"Summaries": []}, {})
    stub.add_response("create_mlflow_app", {"Arn": ARN}, create_parameters(event))
    run.start(event)

    stub.add_response("describe_mlflow_app", described("CreateFailed"), {"Arn": ARN})
    run.poll(last=True)

    body = run.response(event)
    assert body["Status"] == "FAILED"
    assert body["PhysicalResourceId"] == ARN
    assert "CreateFailed" in body["Reason"]


def test_a_bad_name_fails_at_once_without_a_call_or_a_schedule(mlflow_app_handler, response_server):
    event = load_event(HERE, "create-bad-name", response_server.url)

    mlflow_app_handler.handler(event, LambdaContext())  # no Stubber response queued: any call would fail

    [response] = response_server.responses
    body = response["body"]
    assert body["Status"] == "FAILED"
    assert "Name 'mlflow_proxy' is not valid" in body["Reason"]
    assert ":mlflow-app/" not in body["PhysicalResourceId"]


def test_a_retried_create_adopts_the_app_instead_of_starting_another(run, sagemaker, response_server):
    _, stub = sagemaker
    event = load_event(HERE, "create", response_server.url)
    stub.add_response("list_mlflow_apps", {"Summaries": [
        {"Arn": ARN, "Name": "mlflow-proxy", "Status": "Creating"}]}, {})
    stub.add_response("list_tags", {"Tags": OWNER_TAGS}, {"ResourceArn": ARN})
    run.start(event)  # Stubber would fail a create_mlflow_app call: none is queued

    stub.add_response("describe_mlflow_app", described("Created"), {"Arn": ARN})
    run.poll(last=True)

    body = run.response(event)
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", ARN)


def test_an_update_in_place_sends_the_desired_configuration_and_waits_for_the_changes(run, sagemaker,
                                                                                    response_server):
    _, stub = sagemaker
    event = load_event(HERE, "update-in-place", response_server.url)
    changes = {"ModelRegistrationMode": "AutoModelRegistrationDisabled", "WeeklyMaintenanceWindowStart": "Sun:02:00"}
    stub.add_response("update_mlflow_app", {"Arn": ARN}, update_parameters(event))
    run.start(event)

    stub.add_response("describe_mlflow_app", described("Updating"), {"Arn": ARN})
    run.poll()
    stub.add_response("describe_mlflow_app", described("Updated", **changes), {"Arn": ARN})
    run.poll(last=True)

    body = run.response(event)
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", ARN)
    assert body["Data"] == attributes()


def test_an_update_refused_as_a_conflict_waits_and_is_sent_again(run, sagemaker, response_server):
    _, stub = sagemaker
    event = load_event(HERE, "update-in-place", response_server.url)
    changes = {"ModelRegistrationMode": "AutoModelRegistrationDisabled", "WeeklyMaintenanceWindowStart": "Sun:02:00"}
    stub.add_client_error("update_mlflow_app", "ConflictException", "maintenance in progress", 400)
    run.start(event)

    stub.add_response("describe_mlflow_app", described("Updated"), {"Arn": ARN})
    stub.add_response("update_mlflow_app", {"Arn": ARN}, update_parameters(event))
    run.poll()
    stub.add_response("describe_mlflow_app", described("Updated", **changes), {"Arn": ARN})
    run.poll(last=True)

    assert run.response(event)["Status"] == "SUCCESS"


def test_a_maintenance_window_change_leaves_automatic_registration_off(run, sagemaker, response_server):
    """The template passes ModelRegistrationMode unchanged; UpdateMlflowApp would default it to enabled."""
    _, stub = sagemaker
    event = load_event(HERE, "update-maintenance-window", response_server.url)
    stub.add_response("update_mlflow_app", {"Arn": ARN}, {
        "Arn": ARN, "Name": "mlflow-proxy", "ArtifactStoreUri": "s3://mlflow-proxy-artifacts-123456789012/mlflow",
        "ModelRegistrationMode": "AutoModelRegistrationDisabled", "WeeklyMaintenanceWindowStart": "Sun:02:00",
        "DefaultDomainIdList": ["d-abcdef123456"], "AccountDefaultStatus": "DISABLED"})
    run.start(event)

    stub.add_response("describe_mlflow_app", described(
        "Updated", WeeklyMaintenanceWindowStart="Sun:02:00", ModelRegistrationMode="AutoModelRegistrationDisabled"),
        {"Arn": ARN})
    run.poll(last=True)

    assert run.response(event)["Status"] == "SUCCESS"


def test_a_create_refused_while_the_new_role_propagates_is_retried_at_the_next_poll(run, sagemaker,
                                                                                   response_server):
    _, stub = sagemaker
    event = load_event(HERE, "create", response_server.url)
    stub.add_response("list_mlflow_apps", {"Summaries": []}, {})
    stub.add_client_error("create_mlflow_app", "ValidationException", ROLE_NOT_ASSUMABLE, 400)
    run.start(event)

    stub.add_response("list_mlflow_apps", {"Summaries": []}, {})
    stub.add_response("create_mlflow_app", {"Arn": ARN}, create_parameters(event))
    stub.add_response("describe_mlflow_app", described("Creating"), {"Arn": ARN})
    run.poll()
    # The next poll finds the app the previous one started (the scheduled event never changes).
    stub.add_response("list_mlflow_apps", {"Summaries": [
        {"Arn": ARN, "Name": "mlflow-proxy", "Status": "Creating"}]}, {})
    stub.add_response("list_tags", {"Tags": OWNER_TAGS}, {"ResourceArn": ARN})
    stub.add_response("describe_mlflow_app", described("Created"), {"Arn": ARN})
    run.poll(last=True)

    body = run.response(event)
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", ARN)
    assert body["Data"] == attributes()


def test_a_role_change_creates_a_new_app_and_returns_its_arn(run, sagemaker, response_server):
    _, stub = sagemaker
    event = load_event(HERE, "update-replacement", response_server.url)
    stub.add_response("list_mlflow_apps", {"Summaries": [{"Arn": ARN, "Name": "mlflow-proxy", "Status": "Created"}]}, {})
    stub.add_response("create_mlflow_app", {"Arn": NEW_ARN}, create_parameters(event, "mlflow-proxy-e4c8a1d2"))
    run.start(event)

    stub.add_response("describe_mlflow_app", described("Created", NEW_ARN, "mlflow-proxy-e4c8a1d2"), {"Arn": NEW_ARN})
    run.poll(last=True)

    body = run.response(event)
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", NEW_ARN)
    assert body["Data"] == attributes(NEW_ARN, "mlflow-proxy-e4c8a1d2")


def test_a_replacement_refused_while_its_new_role_propagates_is_retried_at_the_next_poll(run, sagemaker,
                                                                                       response_server):
    _, stub = sagemaker
    event = load_event(HERE, "update-replacement", response_server.url)
    stub.add_response("list_mlflow_apps", {"Summaries": []}, {})
    stub.add_client_error("create_mlflow_app", "ValidationException", ROLE_NOT_ASSUMABLE, 400)
    run.start(event)

    stub.add_response("list_mlflow_apps", {"Summaries": []}, {})
    stub.add_response("create_mlflow_app", {"Arn": NEW_ARN}, create_parameters(event, "mlflow-proxy-e4c8a1d2"))
    stub.add_response("describe_mlflow_app", described("Created", NEW_ARN, "mlflow-proxy-e4c8a1d2"), {"Arn": NEW_ARN})
    run.poll(last=True)

    body = run.response(event)
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", NEW_ARN)
    assert body["Data"] == attributes(NEW_ARN, "mlflow-proxy-e4c8a1d2")


def test_a_failed_replacement_is_deleted_and_the_old_app_kept(run, sagemaker, response_server):
    _, stub = sagemaker
    event = load_event(HERE, "update-replacement", response_server.url)
    stub.add_response("list_mlflow_apps", {"Summaries": []}, {})
    stub.add_response("create_mlflow_app", {"Arn": NEW_ARN}, create_parameters(event, "mlflow-proxy-e4c8a1d2"))
    run.start(event)

    stub.add_response("describe_mlflow_app", described("CreateFailed", NEW_ARN), {"Arn": NEW_ARN})
    stub.add_response("delete_mlflow_app", {"Arn": NEW_ARN}, {"Arn": NEW_ARN})
    run.poll(last=True)

    body = run.response(event)
    assert (body["Status"], body["PhysicalResourceId"]) == ("FAILED", ARN)


def test_an_update_without_changes_calls_nothing_that_changes_the_app(run, sagemaker, response_server):
    _, stub = sagemaker
    event = load_event(HERE, "update-no-change", response_server.url)
    run.start(event)

    stub.add_response("describe_mlflow_app", described("Created"), {"Arn": ARN})
    run.poll(last=True)

    body = run.response(event)
    assert (body["Status"], body["PhysicalResourceId"], body["Data"]) == ("SUCCESS", ARN, attributes())


def test_delete_deletes_the_app_and_answers_once_it_is_gone(run, sagemaker, response_server):
    _, stub = sagemaker
    event = load_event(HERE, "delete", response_server.url)
    stub.add_response("delete_mlflow_app", {"Arn": ARN}, {"Arn": ARN})
    run.start(event)

    stub.add_response("describe_mlflow_app", described("Deleting"), {"Arn": ARN})
    run.poll()
    stub.add_client_error("describe_mlflow_app", "ResourceNotFound", "not found", 400)
    run.poll(last=True)

    body = run.response(event)
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", ARN)


def test_deleting_an_app_already_gone_succeeds(run, sagemaker, response_server):
    _, stub = sagemaker
    event = load_event(HERE, "delete", response_server.url)
    stub.add_client_error("delete_mlflow_app", "ResourceNotFound", "not found", 400)
    run.start(event)

    stub.add_client_error("describe_mlflow_app", "ResourceNotFound", "not found", 400)
    run.poll(last=True)

    assert run.response(event)["Status"] == "SUCCESS"


def test_deleting_after_a_failed_create_succeeds_without_a_sagemaker_call(run, response_server):
    event = load_event(HERE, "delete-after-failed-create", response_server.url)
    run.start(event)
    run.poll(last=True)

    body = run.response(event)
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", event["PhysicalResourceId"])


def test_a_poll_throttled_past_botocores_retries_asks_again_at_the_next(run, sagemaker, response_server):
    _, stub = sagemaker
    event = load_event(HERE, "create", response_server.url)
    stub.add_response("list_mlflow_apps", {"Summaries": []}, {})
    stub.add_response("create_mlflow_app", {"Arn": ARN}, create_parameters(event))
    run.start(event)
    stub.add_client_error("describe_mlflow_app", "ThrottlingException", "Rate exceeded", 400)
    run.poll()
    stub.add_response("describe_mlflow_app", described("Created"), {"Arn": ARN})
    run.poll(last=True)

    assert run.response(event)["Status"] == "SUCCESS"
