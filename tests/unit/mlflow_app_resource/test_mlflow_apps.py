"""The MLflow App logic against Stubber, which checks every call against botocore's service model."""

import datetime

import pytest

from mlflow_app_resource import mlflow_apps
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


def test_create_starts_the_app_with_the_owner_tags_and_returns_its_arn(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_response("list_mlflow_apps", {"Summaries": [summary("another-app")]}, {})
    stub.add_response("create_mlflow_app", {"Arn": ARN}, {
        **SETTINGS, "Tags": SETTINGS["Tags"] + OWNER.tags()})

    assert mlflow_apps.start_create(client, SETTINGS, OWNER, sleeps.append) == ARN


def test_create_leaves_out_an_empty_domain_list(sagemaker, sleeps):
    client, stub = sagemaker
    settings = {**SETTINGS, "DefaultDomainIdList": []}
    stub.add_response("list_mlflow_apps", {"Summaries": []}, {})
    expected = {name: value for name, value in settings.items() if name != "DefaultDomainIdList"}
    stub.add_response("create_mlflow_app", {"Arn": ARN}, {**expected, "Tags": SETTINGS["Tags"] + OWNER.tags()})

    assert mlflow_apps.start_create(client, settings, OWNER, sleeps.append) == ARN


def test_a_retried_create_adopts_the_app_it_already_started(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_response("list_mlflow_apps", {"Summaries": [summary("other")], "NextToken": "page2"}, {})
    stub.add_response("list_mlflow_apps", {"Summaries": [summary("mlflow-proxy", "Creating")]},
                      {"NextToken": "page2"})
    stub.add_response("list_tags", {"Tags": [{"Key": "project", "Value": "x"}] + OWNER.tags()},
                      {"ResourceArn": ARN})

    assert mlflow_apps.start_create(client, SETTINGS, OWNER, sleeps.append) == ARN  # no second create


def test_create_refuses_an_app_of_the_same_name_that_is_not_its_own(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_response("list_mlflow_apps", {"Summaries": [summary("mlflow-proxy")]}, {})
    stub.add_response("list_tags", {"Tags": Owner(STACK_ID, "OtherApp").tags()}, {"ResourceArn": ARN})

    with pytest.raises(AppFailed, match="already exists and is not this resource's"):
        mlflow_apps.start_create(client, SETTINGS, OWNER, sleeps.append)


def test_create_ignores_a_deleted_app_of_the_same_name(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_response("list_mlflow_apps", {"Summaries": [summary("mlflow-proxy", "Deleted", NEW_ARN)]}, {})
    stub.add_response("create_mlflow_app", {"Arn": ARN}, {**SETTINGS, "Tags": SETTINGS["Tags"] + OWNER.tags()})

    assert mlflow_apps.start_create(client, SETTINGS, OWNER, sleeps.append) == ARN


def test_throttled_calls_back_off_and_retry(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_client_error("list_mlflow_apps", "ThrottlingException", http_status_code=400)
    stub.add_client_error("list_mlflow_apps", "ThrottlingException", http_status_code=400)
    stub.add_response("list_mlflow_apps", {"Summaries": []}, {})
    stub.add_client_error("create_mlflow_app", "ThrottlingException", http_status_code=400)
    stub.add_response("create_mlflow_app", {"Arn": ARN}, {**SETTINGS, "Tags": SETTINGS["Tags"] + OWNER.tags()})

    assert mlflow_apps.start_create(client, SETTINGS, OWNER, sleeps.append) == ARN
    assert sleeps == [1, 2, 1]


def test_throttling_that_does_not_stop_fails_after_the_back_off(sagemaker, sleeps):
    client, stub = sagemaker
    for _ in range(len(mlflow_apps.BACKOFF_SECONDS) + 1):
        stub.add_client_error("list_mlflow_apps", "ThrottlingException", http_status_code=400)

    with pytest.raises(Exception, match="ThrottlingException"):
        mlflow_apps.start_create(client, SETTINGS, OWNER, sleeps.append)
    assert sleeps == list(mlflow_apps.BACKOFF_SECONDS)


def test_a_throttled_poll_is_not_finished_and_asks_again_next_time(sagemaker, sleeps):
    client, stub = sagemaker
    for _ in range(len(mlflow_apps.BACKOFF_SECONDS) + 1):
        stub.add_client_error("describe_mlflow_app", "ThrottlingException", http_status_code=400)

    assert mlflow_apps.create_finished(client, ARN, sleeps.append) is None


def test_create_is_not_finished_while_creating(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_response("describe_mlflow_app", described("Creating"), {"Arn": ARN})

    assert mlflow_apps.create_finished(client, ARN, sleeps.append) is None


def test_a_created_app_gives_its_attributes(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_response("describe_mlflow_app", described("Created"), {"Arn": ARN})

    assert mlflow_apps.create_finished(client, ARN, sleeps.append) == {
        "Arn": ARN, "Name": "mlflow-proxy", "MlflowVersion": "3.4.0",
        "EndpointUrl": "https://mlflow.sagemaker.us-east-1.app.aws"}


def test_a_failed_create_fails_with_the_status(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_response("describe_mlflow_app", described("CreateFailed"), {"Arn": ARN})

    with pytest.raises(AppFailed, match=r"could not create MLflow App .*app-a1b2c3d4e5f6.*CreateFailed"):
        mlflow_apps.create_finished(client, ARN, sleeps.append)


def test_update_sends_only_the_changes_and_retags(sagemaker, sleeps):
    client, stub = sagemaker
    changes = {"ModelRegistrationMode": "AutoModelRegistrationDisabled"}
    new = {**SETTINGS, "Tags": [{"Key": "project", "Value": "renamed"}, {"Key": "team", "Value": "ml"}]}
    old = {**SETTINGS, "Tags": [{"Key": "project", "Value": "mlflow-proxy"}, {"Key": "cost", "Value": "1"}]}
    stub.add_response("update_mlflow_app", {"Arn": ARN}, {"Arn": ARN, **changes})
    stub.add_response("delete_tags", {}, {"ResourceArn": ARN, "TagKeys": ["cost"]})
    stub.add_response("add_tags", {"Tags": new["Tags"]}, {"ResourceArn": ARN, "Tags": new["Tags"]})

    mlflow_apps.start_update(client, ARN, old, new, changes, sleeps.append)


def test_no_change_makes_no_call(sagemaker, sleeps):
    client, _ = sagemaker  # Stubber fails any call it was not told to expect

    mlflow_apps.start_update(client, ARN, SETTINGS, SETTINGS, {}, sleeps.append)


def test_an_update_refused_by_a_busy_app_is_sent_again_once_it_is_idle(sagemaker, sleeps):
    client, stub = sagemaker
    changes = {"WeeklyMaintenanceWindowStart": "Sun:02:00"}
    stub.add_client_error("update_mlflow_app", "ConflictException", "maintenance in progress", 400)
    mlflow_apps.start_update(client, ARN, SETTINGS, SETTINGS, changes, sleeps.append)

    stub.add_response("describe_mlflow_app", described("Updating", WeeklyMaintenanceWindowStart="Tue:03:30"),
                      {"Arn": ARN})
    assert mlflow_apps.update_finished(client, ARN, changes, sleeps.append) is None

    stub.add_response("describe_mlflow_app", described("Updated", WeeklyMaintenanceWindowStart="Tue:03:30"),
                      {"Arn": ARN})
    stub.add_client_error("update_mlflow_app", "ConflictException", "still busy", 400)
    assert mlflow_apps.update_finished(client, ARN, changes, sleeps.append) is None

    stub.add_response("describe_mlflow_app", described("Updated", WeeklyMaintenanceWindowStart="Tue:03:30"),
                      {"Arn": ARN})
    stub.add_response("update_mlflow_app", {"Arn": ARN}, {"Arn": ARN, **changes})
    assert mlflow_apps.update_finished(client, ARN, changes, sleeps.append) is None

    stub.add_response("describe_mlflow_app", described("Updated", WeeklyMaintenanceWindowStart="Sun:02:00"),
                      {"Arn": ARN})
    assert mlflow_apps.update_finished(client, ARN, changes, sleeps.append)["Arn"] == ARN


def test_an_update_finishes_when_the_app_shows_the_changes_in_any_domain_order(sagemaker, sleeps):
    client, stub = sagemaker
    changes = {"DefaultDomainIdList": ["d-b", "d-a"]}
    stub.add_response("describe_mlflow_app", described("Updated", DefaultDomainIdList=["d-a", "d-b"]), {"Arn": ARN})

    assert mlflow_apps.update_finished(client, ARN, changes, sleeps.append)["Name"] == "mlflow-proxy"


def test_a_failed_update_fails(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_response("describe_mlflow_app", described("UpdateFailed"), {"Arn": ARN})

    with pytest.raises(AppFailed, match="UpdateFailed"):
        mlflow_apps.update_finished(client, ARN, {"Name": "renamed"}, sleeps.append)


def test_other_update_errors_are_not_swallowed(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_client_error("update_mlflow_app", "ValidationException", "bad window", 400)

    with pytest.raises(Exception, match="bad window"):
        mlflow_apps.start_update(client, ARN, SETTINGS, SETTINGS, {"Name": "x"}, sleeps.append)


def test_replacement_names_differ_from_the_old_app_and_repeat_for_the_same_request():
    first = mlflow_apps.replacement_name("mlflow-proxy", "e4c8a1d2-7b3f-4a9e-8c6d-2f1e0a9b8c7d")
    assert first == "mlflow-proxy-e4c8a1d2"
    assert mlflow_apps.replacement_name("mlflow-proxy", "e4c8a1d2-7b3f-4a9e-8c6d-2f1e0a9b8c7d") == first
    assert mlflow_apps.replacement_name("mlflow-proxy", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d") != first


def test_delete_deletes_and_waits_until_the_app_is_gone(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_response("delete_mlflow_app", {"Arn": ARN}, {"Arn": ARN})
    mlflow_apps.start_delete(client, ARN, sleeps.append)

    stub.add_response("describe_mlflow_app", described("Deleting"), {"Arn": ARN})
    assert mlflow_apps.delete_finished(client, ARN, sleeps.append) is False
    stub.add_client_error("describe_mlflow_app", "ResourceNotFound", "no such app", 400)
    assert mlflow_apps.delete_finished(client, ARN, sleeps.append) is True


def test_a_deleted_status_is_gone(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_response("describe_mlflow_app", described("Deleted"), {"Arn": ARN})

    assert mlflow_apps.delete_finished(client, ARN, sleeps.append) is True


def test_deleting_an_app_that_is_already_gone_succeeds(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_client_error("delete_mlflow_app", "ResourceNotFound", "no such app", 400)

    mlflow_apps.start_delete(client, ARN, sleeps.append)


def test_a_delete_refused_while_busy_is_sent_again_once_idle(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_client_error("delete_mlflow_app", "ConflictException", "updating", 400)
    mlflow_apps.start_delete(client, ARN, sleeps.append)

    stub.add_response("describe_mlflow_app", described("Updated"), {"Arn": ARN})
    stub.add_response("delete_mlflow_app", {"Arn": ARN}, {"Arn": ARN})
    assert mlflow_apps.delete_finished(client, ARN, sleeps.append) is False


def test_a_failed_delete_fails(sagemaker, sleeps):
    client, stub = sagemaker
    stub.add_response("describe_mlflow_app", described("DeleteFailed"), {"Arn": ARN})

    with pytest.raises(AppFailed, match="DeleteFailed"):
        mlflow_apps.delete_finished(client, ARN, sleeps.append)


def test_deleting_what_a_failed_create_left_is_success_without_a_call(sagemaker, sleeps):
    client, _ = sagemaker
    physical_id = "mlflow-proxy-MlflowStack-1T2ZQ3ABCDEF_MlflowApp_K3M9Q2XZ"

    mlflow_apps.start_delete(client, physical_id, sleeps.append)
    assert mlflow_apps.delete_finished(client, physical_id, sleeps.append) is True


def test_the_endpoint_is_built_from_the_apps_region():
    arn = "arn:aws-us-gov:sagemaker:us-gov-west-1:123456789012:mlflow-app/app-a1b2c3d4e5f6"
    assert mlflow_apps.endpoint_url(arn) == "https://mlflow.sagemaker.us-gov-west-1.app.aws"
