"""The MLflow App's settings, read from the custom resource's properties.

CloudFormation passes every property as a string or a list of strings. This is where they become
CreateMlflowApp parameters, and where bad input is stopped with an error that names the property
and says what to write instead, before anything is created.
"""

import re

# CreateMlflowApp's Name pattern (botocore does not enforce it). A replacement app is named
# "<Name>-<8 characters>" (mlflow_apps.replacement_name), so Name keeps 9 of the 256 free.
NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,246}")
ARTIFACT_STORE_PATTERN = re.compile(r"s3://[^/]+/?.*")
ROLE_ARN_PATTERN = re.compile(r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
MAINTENANCE_WINDOW_PATTERN = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun):([01]\d|2[0-3]):([0-5]\d)")
MODEL_REGISTRATION_MODES = ("AutoModelRegistrationEnabled", "AutoModelRegistrationDisabled")
ACCOUNT_DEFAULT_STATUSES = ("ENABLED", "DISABLED")
# Two tags are the resource's own (mlflow_apps.Owner); CreateMlflowApp takes at most 50.
MAX_TAGS = 48

REQUIRED = ("Name", "ArtifactStoreUri", "RoleArn")
OPTIONAL = (
    "ModelRegistrationMode",
    "WeeklyMaintenanceWindowStart",
    "KmsKeyId",
    "AccountDefaultStatus",
    "DefaultDomainIdList",
    "Tags",
)
# What UpdateMlflowApp can change in place; RoleArn and KmsKeyId need a new app.
UPDATABLE = (
    "Name",
    "ArtifactStoreUri",
    "ModelRegistrationMode",
    "WeeklyMaintenanceWindowStart",
    "DefaultDomainIdList",
    "AccountDefaultStatus",
)
REPLACING = ("RoleArn", "KmsKeyId")


class InvalidProperty(ValueError):
    """A resource property CloudFormation passed cannot become a valid MLflow App setting."""


def parse(properties: dict) -> dict:
    """Return CreateMlflowApp's parameters (minus Tags' owner tags) from the resource properties."""
    unknown = set(properties) - set(REQUIRED) - set(OPTIONAL) - {"ServiceToken"}
    if unknown:
        raise InvalidProperty(
            f"Unknown propert{'y' if len(unknown) == 1 else 'ies'} {', '.join(sorted(unknown))}; "
            f"the MLflow App takes {', '.join(REQUIRED + OPTIONAL)}."
        )
    missing = [name for name in REQUIRED if not properties.get(name)]
    if missing:
        raise InvalidProperty(f"Missing required property {', '.join(missing)}.")

    settings = {
        "Name": _matching(properties, "Name", NAME_PATTERN, "1 to 247 letters, digits and hyphens, "
                          "starting and ending with a letter or digit (no underscores)"),
        "ArtifactStoreUri": _matching(properties, "ArtifactStoreUri", ARTIFACT_STORE_PATTERN,
                                      "an S3 URI such as s3://my-bucket/mlflow"),
        "RoleArn": _matching(properties, "RoleArn", ROLE_ARN_PATTERN,
                             "an IAM role ARN such as arn:aws:iam::123456789012:role/MlflowRole"),
        "ModelRegistrationMode": _one_of(properties, "ModelRegistrationMode", MODEL_REGISTRATION_MODES,
                                         default="AutoModelRegistrationEnabled"),
        "DefaultDomainIdList": _string_list(properties, "DefaultDomainIdList"),
        "Tags": _tags(properties),
    }
    if properties.get("WeeklyMaintenanceWindowStart"):
        settings["WeeklyMaintenanceWindowStart"] = _matching(
            properties, "WeeklyMaintenanceWindowStart", MAINTENANCE_WINDOW_PATTERN,
            "a day and UTC time such as Tue:03:30")
    if properties.get("KmsKeyId"):
        settings["KmsKeyId"] = _text(properties, "KmsKeyId")
    if properties.get("AccountDefaultStatus"):
        settings["AccountDefaultStatus"] = _one_of(properties, "AccountDefaultStatus",
                                                   ACCOUNT_DEFAULT_STATUSES)
    return settings


def updatable_changes(old: dict, new: dict) -> dict:
    """UpdateMlflowApp's parameters for what changed between two parsed settings."""
    # A scalar removed from the template keeps the app's current value: the API cannot unset it.
    return {name: new[name] for name in UPDATABLE if name in new and new[name] != old.get(name)}


def update_parameters(new: dict) -> dict:
    """UpdateMlflowApp's parameters for the whole desired configuration: every field it can change
    that the settings hold, changed or not (mlflow_apps._send_update says why)."""
    return {name: new[name] for name in UPDATABLE if name in new}


def needs_replacement(old: dict, new: dict) -> bool:
    return any(old.get(name) != new.get(name) for name in REPLACING)


def _text(properties: dict, name: str) -> str:
    value = properties[name]
    if not isinstance(value, str):
        raise InvalidProperty(f"{name} must be a string, not {type(value).__name__}.")
    return value.strip()


def _matching(properties: dict, name: str, pattern: re.Pattern, expected: str) -> str:
    value = _text(properties, name)
    if not pattern.fullmatch(value):
        raise InvalidProperty(f"{name} {value!r} is not valid: expected {expected}.")
    return value


def _one_of(properties: dict, name: str, allowed: tuple, default: str | None = None) -> str:
    if not properties.get(name):
        return default
    value = _text(properties, name)
    if value not in allowed:
        raise InvalidProperty(f"{name} {value!r} is not valid: expected one of {', '.join(allowed)}.")
    return value


def _string_list(properties: dict, name: str) -> list:
    """A list of strings, or one comma-separated string (what !Join or a CommaDelimitedList gives)."""
    value = properties.get(name) or []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidProperty(f"{name} must be a list of strings or a comma-separated string.")
    return [item.strip() for item in value if item.strip()]


def _tags(properties: dict) -> list:
    tags = properties.get("Tags") or []
    if not isinstance(tags, list) or not all(
        isinstance(tag, dict) and set(tag) == {"Key", "Value"} and isinstance(tag["Key"], str)
        and tag["Key"] and isinstance(tag["Value"], str)
        for tag in tags
    ):
        raise InvalidProperty('Tags must be a list of {"Key": "...", "Value": "..."} objects.')
    if len(tags) > MAX_TAGS:
        raise InvalidProperty(f"Tags has {len(tags)} tags; an MLflow App takes at most {MAX_TAGS} here.")
    return tags
