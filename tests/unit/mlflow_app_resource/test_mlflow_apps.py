"""The MLflow App logic against Stubber, which checks every call against botocore's service model."""

import datetime
import time

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from mlflow_app_resource import mlflow_apps, properties
from mlflow_app_resource.mlflow_apps import AppFailed, Owner

STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/mlflow/5b1c2d30-8f4e-11ef-9a2b-0a1b2c3d4e5f"
OWNER = Owner(STACK_ID, "MlflowApp")
ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-app/app-a1b2c3d4e5f6"
NEW_ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-app/app-0f9e8d7c6b5a"
NOW = datetime.datetime(2026, 11, 27, tzinfo=datetime.timezone.utc)
SETTINGS = {
    "Name": "mlflow-proxy",
    "ArtifactStoreUri": "s3://bucket/mlflow",
    "RoleArn": "arn:aws:iam::123456789012:role/MlflowRole",
    "ModelRegistrationMode": "AutoModelRegistrationEnabled",
    "DefaultDomainIdList": ["d-abcdef123456"],
    "Tags": [{"Key": "project", "Value": "mlflow-proxy"}],
}


def described(status, arn=ARN, **fields):
    return {"Arn": arn, "Name": "mlflow-proxy", "Status": status, "MlflowVersion": "3.4.0",
            "ArtifactStoreUri": "s3://bucket/mlflow", "RoleArn": SETTINGS["RoleArn"], **fields}


def summary(name, status="Created", arn=ARN):
    return {"Arn": arn, "Name": name, "Status": status, "CreationTime": NOW}


def within_role_retries():
    """A retry_role_until that has not passed (relative to now, not frozen)."""
    return time.time() + mlflow_apps.ROLE_PROPAGATION_SECONDS


ROLE_NOT_ASSUMABLE = ("SageMaker is unable to perform: sts:AssumeRole on the role. Check if you have a "
                      "trust relationship for 'sagemaker.amazonaws.com' to assume the role.")


def test_create_starts_the_app_with_the_owner_tags_and_returns_its_arn(sagemaker):
    client, stub = sagemaker
    stub.add_response("list_mlflow_apps", {"Summaries": [summary("another-app")]}, {})
    stub.add_response("create_mlflow_app", {"Arn": ARN}, {
        **SETTINGS, "Tags": SETTINGS["Tags"] + OWNER.tags()})

    assert mlflow_apps.start_create(client, SETTINGS, OWNER, within_role_retries()) == ARN


def test_create_leaves_out_an_empty_domain_list(sagemaker):
    client, stub = sagemaker
    settings = {**SETTINGS, "DefaultDomainIdList": []}
    stub.add_response("list_mlflow_apps", {"Summaries": []}, {})
    expected = {name: value for name, value in settings.items() if name != "DefaultDomainIdList"}
    stub.add_response("create_mlflow_app", {"Arn": ARN}, {**expected, "Tags": SETTINGS["Tags"] + OWNER.tags()})

    assert mlflow_apps.start_create(client, settings, OWNER, within_role_retries()) == ARN


def test_a_retried_create_adopts_the_app_it_already_started(sagemaker):
    client, stub = sagemaker
    stub.add_response("list_mlflow_apps", {"Summaries": [summary("other")], "NextToken": "page2"}, {})
    stub.add_response("list_mlflow_apps", {"Summaries": [summary("mlflow-proxy", "Creating")]},
                      {"NextToken": "page2"})
    stub.add_response("list_tags", {"Tags": [{"Key": "project", "Value": "x"}] + OWNER.tags()},
                      {"ResourceArn": ARN})

    assert mlflow_apps.start_create(client, SETTINGS, OWNER, within_role_retries()) == ARN  # no second create


def test_create_refuses_an_app_of_the_same_name_that_is_not_its_own(sagemaker):
    client, stub = sagemaker
    stub.add_response("list_mlflow_apps", {"Summaries": [summary("mlflow-proxy")]}, {})
    stub.add_response("list_tags", {"Tags": Owner(STACK_ID, "OtherApp").tags()}, {"ResourceArn": ARN})

    with pytest.raises(AppFailed, match="already exists and is not this resource's"):
        mlflow_apps.start_create(client, SETTINGS, OWNER, within_role_retries())


def test_create_ignores_a_deleted_app_of_the_same_name(sagemaker):
    client, stub = sagemaker
    stub.add_response("list_mlflow_apps", {"Summaries": [summary("mlflow-proxy", "Deleted", NEW_ARN)]}, {})
    stub.add_response("create_mlflow_app", {"Arn": ARN}, {**SETTINGS, "Tags": SETTINGS["Tags"] + OWNER.tags()})

    assert mlflow_apps.start_create(client, SETTINGS, OWNER, within_role_retries()) == ARN


def test_the_functions_client_retries_throttling_with_botocores_standard_mode(aws_environment, monkeypatch):
    """The client the Lambda builds, through botocore's own retry handler (Stubber would bypass it):
    the wire answers ThrottlingException twice, then the page."""
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda seconds: None)  # backoff, not waited out
    client = boto3.client("sagemaker", region_name="us-east-1", config=mlflow_apps.RETRIES)
    answers = [(400, b'{"__type": "ThrottlingException", "message": "Rate exceeded"}')] * 2 + [
        (200, b'{"Summaries": []}')]
    sent = []

    def wire(request, **_):
        sent.append(request.url)
        status, body = answers[len(sent) - 1]
        return AWSResponse(request.url, status, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body))

    client.meta.events.register("before-send.sagemaker.ListMlflowApps", wire)

    assert mlflow_apps.find_app(client, "mlflow-proxy") is None
    assert len(sent) == 3


class _Raw:
    def __init__(self, body):
        self._body = body

    def stream(self, **_):
        yield self._body


def test_a_poll_still_throttled_after_botocores_retries_is_not_finished(sagemaker):
    client, stub = sagemaker  # Stubber answers past the retry handler: this is the last attempt's error
    stub.add_client_error("describe_mlflow_app", "ThrottlingException", http_status_code=400)

    assert mlflow_apps.create_finished(client, ARN) is None


def test_a_role_sagemaker_cannot_assume_yet_is_tried_again_at_the_next_poll(sagemaker):
    client, stub = sagemaker
    stub.add_response("list_mlflow_apps", {"Summaries": []}, {})
    stub.add_client_error("create_mlflow_app", "ValidationException", ROLE_NOT_ASSUMABLE, 400)

    assert mlflow_apps.start_create(client, SETTINGS, OWNER, within_role_retries()) is None


def test_a_role_still_not_assumable_after_the_retries_fails_with_what_to_check(sagemaker):
    client, stub = sagemaker
    stub.add_response("list_mlflow_apps", {"Summaries": []}, {})
    stub.add_client_error("create_mlflow_app", "ValidationException", ROLE_NOT_ASSUMABLE, 400)

    with pytest.raises(AppFailed, match=r"still cannot assume the role .*MlflowRole after 180 s.*trust policy"):
        mlflow_apps.start_create(client, SETTINGS, OWNER, retry_role_until=time.time() - 1)


def test_other_validation_errors_of_a_create_are_not_retried(sagemaker):
    client, stub = sagemaker
    stub.add_response("list_mlflow_apps", {"Summaries": []}, {})
    stub.add_client_error("create_mlflow_app", "ValidationException", "Invalid ArtifactStoreUri", 400)

    with pytest.raises(Exception, match="Invalid ArtifactStoreUri"):
        mlflow_apps.start_create(client, SETTINGS, OWNER, within_role_retries())


def test_create_is_not_finished_while_creating(sagemaker):
    client, stub = sagemaker
    stub.add_response("describe_mlflow_app", described("Creating"), {"Arn": ARN})

    assert mlflow_apps.create_finished(client, ARN) is None


def test_a_created_app_gives_its_attributes(sagemaker):
    client, stub = sagemaker
    stub.add_response("describe_mlflow_app", described("Created"), {"Arn": ARN})

    assert mlflow_apps.create_finished(client, ARN) == {
        "Arn": ARN, "Name": "mlflow-proxy", "MlflowVersion": "3.4.0",
        "EndpointUrl": "https://mlflow.sagemaker.us-east-1.app.aws"}


def test_a_failed_create_fails_with_the_status(sagemaker):
    client, stub = sagemaker
    stub.add_response("describe_mlflow_app", described("CreateFailed"), {"Arn": ARN})

    with pytest.raises(AppFailed, match=r"could not create MLflow App .*app-a1b2c3d4e5f6.*CreateFailed"):
        mlflow_apps.create_finished(client, ARN)


def test_update_sends_the_whole_desired_configuration_and_retags(sagemaker):
    client, stub = sagemaker
    old = {**SETTINGS, "Tags": [{"Key": "project", "Value": "mlflow-proxy"}, {"Key": "cost", "Value": "1"}]}
    new = {**SETTINGS, "ModelRegistrationMode": "AutoModelRegistrationDisabled",
           "Tags": [{"Key": "project", "Value": "renamed"}, {"Key": "team", "Value": "ml"}]}
    stub.add_response("update_mlflow_app", {"Arn": ARN}, {
        "Arn": ARN, "Name": "mlflow-proxy", "ArtifactStoreUri": "s3://bucket/mlflow",
        "ModelRegistrationMode": "AutoModelRegistrationDisabled", "DefaultDomainIdList": ["d-abcdef123456"]})
    stub.add_response("delete_tags", {}, {"ResourceArn": ARN, "TagKeys": ["cost"]})
    stub.add_response("add_tags", {"Tags": new["Tags"]}, {"ResourceArn": ARN, "Tags": new["Tags"]})

    mlflow_apps.start_update(client, ARN, old, new)


def test_a_maintenance_window_change_keeps_automatic_registration_off(sagemaker):
    """UpdateMlflowApp defaults an omitted ModelRegistrationMode to enabled: it is always sent."""
    client, stub = sagemaker
    old = {**SETTINGS, "ModelRegistrationMode": "AutoModelRegistrationDisabled",
           "WeeklyMaintenanceWindowStart": "Tue:03:30"}
    new = {**old, "WeeklyMaintenanceWindowStart": "Sun:02:00"}
    stub.add_response("update_mlflow_app", {"Arn": ARN}, {
        "Arn": ARN, "Name": "mlflow-proxy", "ArtifactStoreUri": "s3://bucket/mlflow",
        "ModelRegistrationMode": "AutoModelRegistrationDisabled", "WeeklyMaintenanceWindowStart": "Sun:02:00",
        "DefaultDomainIdList": ["d-abcdef123456"]})

    mlflow_apps.start_update(client, ARN, old, new)  # the fixture fails if the call was not made


def test_no_change_makes_no_call(sagemaker):
    client, _ = sagemaker  # Stubber fails any call it was not told to expect

    mlflow_apps.start_update(client, ARN, SETTINGS, SETTINGS)


def test_an_update_refused_by_a_busy_app_is_sent_again_once_it_is_idle(sagemaker):
    client, stub = sagemaker
    new = {**SETTINGS, "WeeklyMaintenanceWindowStart": "Sun:02:00"}
    desired = {"Arn": ARN, **properties.update_parameters(new)}
    stub.add_client_error("update_mlflow_app", "ConflictException", "maintenance in progress", 400)
    mlflow_apps.start_update(client, ARN, SETTINGS, new)

    stub.add_response("describe_mlflow_app", described("Updating", WeeklyMaintenanceWindowStart="Tue:03:30"),
                      {"Arn": ARN})
    assert mlflow_apps.update_finished(client, ARN, SETTINGS, new) is None

    stub.add_response("describe_mlflow_app", described("Updated", WeeklyMaintenanceWindowStart="Tue:03:30"),
                      {"Arn": ARN})
    stub.add_client_error("update_mlflow_app", "ConflictException", "still busy", 400)
    assert mlflow_apps.update_finished(client, ARN, SETTINGS, new) is None

    stub.add_response("describe_mlflow_app", described("Updated", WeeklyMaintenanceWindowStart="Tue:03:30"),
                      {"Arn": ARN})
    stub.add_response("update_mlflow_app", {"Arn": ARN}, desired)
    assert mlflow_apps.update_finished(client, ARN, SETTINGS, new) is None

    stub.add_response("describe_mlflow_app", described("Updated", WeeklyMaintenanceWindowStart="Sun:02:00"),
                      {"Arn": ARN})
    assert mlflow_apps.update_finished(client, ARN, SETTINGS, new)["Arn"] == ARN


def test_an_update_finishes_when_the_app_shows_the_changes_in_any_domain_order(sagemaker):
    client, stub = sagemaker
    new = {**SETTINGS, "DefaultDomainIdList": ["d-b", "d-a"]}
    stub.add_response("describe_mlflow_app", described("Updated", DefaultDomainIdList=["d-a", "d-b"]), {"Arn": ARN})

    assert mlflow_apps.update_finished(client, ARN, SETTINGS, new)["Name"] == "mlflow-proxy"


def test_a_failed_update_fails(sagemaker):
    client, stub = sagemaker
    stub.add_response("describe_mlflow_app", described("UpdateFailed"), {"Arn": ARN})

    with pytest.raises(AppFailed, match="UpdateFailed"):
        mlflow_apps.update_finished(client, ARN, SETTINGS, {**SETTINGS, "Name": "renamed"})


def test_other_update_errors_are_not_swallowed(sagemaker):
    client, stub = sagemaker
    stub.add_client_error("update_mlflow_app", "ValidationException", "bad window", 400)

    with pytest.raises(Exception, match="bad window"):
        mlflow_apps.start_update(client, ARN, SETTINGS, {**SETTINGS, "Name": "x"})


def test_replacement_names_differ_from_the_old_app_and_repeat_for_the_same_request():
    first = mlflow_apps.replacement_name("mlflow-proxy", "e4c8a1d2-7b3f-4a9e-8c6d-2f1e0a9b8c7d")
    assert first == "mlflow-proxy-e4c8a1d2"
    assert mlflow_apps.replacement_name("mlflow-proxy", "e4c8a1d2-7b3f-4a9e-8c6d-2f1e0a9b8c7d") == first
    assert mlflow_apps.replacement_name("mlflow-proxy", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d") != first


def test_delete_deletes_and_waits_until_the_app_is_gone(sagemaker):
    client, stub = sagemaker
    stub.add_response("delete_mlflow_app", {"Arn": ARN}, {"Arn": ARN})
    mlflow_apps.start_delete(client, ARN)

    stub.add_response("describe_mlflow_app", described("Deleting"), {"Arn": ARN})
    assert mlflow_apps.delete_finished(client, ARN) is False
    stub.add_client_error("describe_mlflow_app", "ResourceNotFound", "no such app", 400)
    assert mlflow_apps.delete_finished(client, ARN) is True


def test_a_deleted_status_is_gone(sagemaker):
    client, stub = sagemaker
    stub.add_response("describe_mlflow_app", described("Deleted"), {"Arn": ARN})

    assert mlflow_apps.delete_finished(client, ARN) is True


def test_deleting_an_app_that_is_already_gone_succeeds(sagemaker):
    client, stub = sagemaker
    stub.add_client_error("delete_mlflow_app", "ResourceNotFound", "no such app", 400)

    mlflow_apps.start_delete(client, ARN)


def test_a_delete_refused_while_busy_is_sent_again_once_idle(sagemaker):
    client, stub = sagemaker
    stub.add_client_error("delete_mlflow_app", "ConflictException", "updating", 400)
    mlflow_apps.start_delete(client, ARN)

    stub.add_response("describe_mlflow_app", described("Updated"), {"Arn": ARN})
    stub.add_response("delete_mlflow_app", {"Arn": ARN}, {"Arn": ARN})
    assert mlflow_apps.delete_finished(client, ARN) is False


def test_a_failed_delete_fails(sagemaker):
    client, stub = sagemaker
    stub.add_response("describe_mlflow_app", described("DeleteFailed"), {"Arn": ARN})

    with pytest.raises(AppFailed, match="DeleteFailed"):
        mlflow_apps.delete_finished(client, ARN)


def test_deleting_what_a_failed_create_left_is_success_without_a_call(sagemaker):
    client, _ = sagemaker
    physical_id = "mlflow-proxy-MlflowStack-1T2ZQ3ABCDEF_MlflowApp_K3M9Q2XZ"

    mlflow_apps.start_delete(client, physical_id)
    assert mlflow_apps.delete_finished(client, physical_id) is True


def test_the_endpoint_is_built_from_the_apps_region():
    arn = "arn:aws-us-gov:sagemaker:us-gov-west-1:123456789012:mlflow-app/app-a1b2c3d4e5f6"
    assert mlflow_apps.endpoint_url(arn) == "https://mlflow.sagemaker.us-gov-west-1.app.aws"
