"""Resource properties, as CloudFormation passes them, become CreateMlflowApp parameters."""

import pytest

from mlflow_app_resource import properties
from mlflow_app_resource.properties import InvalidProperty

REQUIRED = {
    "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:f",
    "Name": "mlflow-proxy",
    "ArtifactStoreUri": "s3://bucket/mlflow",
    "RoleArn": "arn:aws:iam::123456789012:role/MlflowRole",
}


def test_the_minimum_gets_automatic_model_registration_like_tracking_mode():
    assert properties.parse(REQUIRED) == {
        "Name": "mlflow-proxy",
        "ArtifactStoreUri": "s3://bucket/mlflow",
        "RoleArn": "arn:aws:iam::123456789012:role/MlflowRole",
        "ModelRegistrationMode": "AutoModelRegistrationEnabled",
        "DefaultDomainIdList": [],
        "Tags": [],
    }


def test_every_optional_property_is_passed_on():
    settings = properties.parse({
        **REQUIRED,
        "ModelRegistrationMode": "AutoModelRegistrationDisabled",
        "WeeklyMaintenanceWindowStart": "Tue:03:30",
        "KmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "AccountDefaultStatus": "ENABLED",
        "DefaultDomainIdList": ["d-abcdef123456"],
        "Tags": [{"Key": "team", "Value": "ml"}],
    })
    assert settings["ModelRegistrationMode"] == "AutoModelRegistrationDisabled"
    assert settings["WeeklyMaintenanceWindowStart"] == "Tue:03:30"
    assert settings["KmsKeyId"].startswith("arn:aws:kms:")
    assert settings["AccountDefaultStatus"] == "ENABLED"
    assert settings["DefaultDomainIdList"] == ["d-abcdef123456"]
    assert settings["Tags"] == [{"Key": "team", "Value": "ml"}]


def test_a_comma_separated_domain_list_is_a_list():
    settings = properties.parse({**REQUIRED, "DefaultDomainIdList": "d-aaa, d-bbb,"})
    assert settings["DefaultDomainIdList"] == ["d-aaa", "d-bbb"]


@pytest.mark.parametrize("name", ["mlflow_proxy", "-mlflow", "mlflow-", "a" * 248, "ml flow"])
def test_a_name_the_api_would_refuse_is_a_clear_error(name):
    with pytest.raises(InvalidProperty, match=r"Name .* is not valid: expected 1 to 247 letters, digits"):
        properties.parse({**REQUIRED, "Name": name})


@pytest.mark.parametrize("name", ["a", "mlflow--proxy-2", "A" * 247])
def test_names_the_api_takes_are_accepted(name):
    assert properties.parse({**REQUIRED, "Name": name})["Name"] == name


@pytest.mark.parametrize("field, value, message", [
    ("ArtifactStoreUri", "bucket/mlflow", "expected an S3 URI"),
    ("RoleArn", "MlflowRole", "expected an IAM role ARN"),
    ("WeeklyMaintenanceWindowStart", "Tuesday 3am", "expected a day and UTC time such as Tue:03:30"),
    ("ModelRegistrationMode", "true", "expected one of AutoModelRegistrationEnabled"),
    ("AccountDefaultStatus", "yes", "expected one of ENABLED, DISABLED"),
    ("Tags", [{"Key": "a"}], "Tags must be a list of"),
    ("DefaultDomainIdList", [1], "DefaultDomainIdList must be a list of strings"),
])
def test_bad_values_name_the_property_and_what_to_write(field, value, message):
    with pytest.raises(InvalidProperty, match=message):
        properties.parse({**REQUIRED, field: value})


def test_missing_required_properties_are_named():
    with pytest.raises(InvalidProperty, match="Missing required property ArtifactStoreUri, RoleArn"):
        properties.parse({"Name": "mlflow-proxy"})


def test_a_misspelt_property_is_an_error_not_ignored():
    with pytest.raises(InvalidProperty, match="Unknown property KmsKeyID"):
        properties.parse({**REQUIRED, "KmsKeyID": "alias/x"})


def test_too_many_tags_leave_room_for_the_owner_tags():
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(49)]
    with pytest.raises(InvalidProperty, match="at most 48"):
        properties.parse({**REQUIRED, "Tags": tags})


def test_role_and_key_changes_need_a_new_app_and_the_rest_do_not():
    old = properties.parse(REQUIRED)
    assert properties.needs_replacement(old, properties.parse({**REQUIRED, "RoleArn": REQUIRED["RoleArn"] + "2"}))
    assert properties.needs_replacement(old, properties.parse({**REQUIRED, "KmsKeyId": "alias/mlflow"}))
    renamed = properties.parse({**REQUIRED, "Name": "renamed", "AccountDefaultStatus": "ENABLED"})
    assert not properties.needs_replacement(old, renamed)
    assert properties.updatable_changes(old, renamed) == {"Name": "renamed", "AccountDefaultStatus": "ENABLED"}
    assert properties.updatable_changes(old, old) == {}
