"""Create, update and delete an MLflow App in short steps, with no waiter to lean on.

Each change has two halves. A `start_*` function makes the call that starts the work and returns at
once; a `*_finished` function is polled (crhelper re-invokes the Lambda every minute) and reports
whether the app has reached the state the start asked for. Nothing here sleeps: throttled calls
are retried by botocore (RETRIES), and every longer wait is a poll, so no Lambda times out however
long SageMaker takes.

`settings` are the parsed resource properties (properties.parse): CreateMlflowApp's parameters.
"""

import logging
import re
import time
from dataclasses import dataclass

from botocore.config import Config
from botocore.exceptions import ClientError

if __package__:  # imported as mlflow_app_resource.mlflow_apps (tests); Lambda loads it from the code root
    from . import properties
else:
    import properties

logger = logging.getLogger(__name__)

APP_ARN_PATTERN = re.compile(r"arn:aws[a-z\-]*:sagemaker:([a-z0-9\-]+):[0-9]{12}:mlflow-app/.+")
BUSY = ("Creating", "Updating", "Deleting")
GONE = ("Deleting", "Deleted")
# botocore's standard retry mode backs off and retries throttling and transient errors (these codes
# among them) itself; a describe still throttled after that is simply asked again at the next poll.
RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 6})
THROTTLING = ("ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded")
# IAM is eventually consistent: a role created seconds before CreateMlflowApp may not be assumable
# by SageMaker yet. That refusal is retried at each poll for this long (docs/aws-facts.md,
# "Deploy and update behaviour"), then reported.
ROLE_PROPAGATION_SECONDS = 180


class AppFailed(Exception):
    """SageMaker reports that the MLflow App could not reach the state asked for."""


@dataclass(frozen=True)
class Owner:
    """The CloudFormation resource an app belongs to, written on the app as two tags.

    A create delivered twice finds the app it already started by name and adopts it only if these
    tags say it is this resource's; an app of the same name that is not is left alone.
    """

    stack_id: str
    logical_id: str

    STACK_ID_TAG = "mlflow-proxy:cloudformation-stack-id"
    LOGICAL_ID_TAG = "mlflow-proxy:cloudformation-logical-id"

    def tags(self) -> list:
        return [{"Key": self.STACK_ID_TAG, "Value": self.stack_id},
                {"Key": self.LOGICAL_ID_TAG, "Value": self.logical_id}]

    def owns(self, tags: list) -> bool:
        return all(tag in tags for tag in self.tags())


def is_app_arn(physical_id: str) -> bool:
    return bool(APP_ARN_PATTERN.fullmatch(physical_id or ""))


def endpoint_url(arn: str) -> str:
    # Describe returns no REST endpoint for apps; it is per region, and "aws" in every partition.
    region = APP_ARN_PATTERN.fullmatch(arn).group(1)
    return f"https://mlflow.sagemaker.{region}.app.aws"


def replacement_name(name: str, request_id: str) -> str:
    """The name of the app that replaces one: it must differ from the old app's, which still exists,
    and be the same when CloudFormation delivers the same update twice."""
    return f"{name}-{request_id.replace('-', '')[:8]}"


def start_create(sagemaker, settings: dict, owner: Owner, retry_role_until: float) -> str | None:
    """Create the app, or adopt the one an earlier delivery of this request created. Returns its ARN,
    or None while SageMaker cannot assume the role yet and `retry_role_until` (a time.time()) has not
    passed: the next poll calls this again."""
    existing = find_app(sagemaker, settings["Name"])
    if existing:
        tags = sagemaker.list_tags(ResourceArn=existing)["Tags"]
        if not owner.owns(tags):
            raise AppFailed(f"An MLflow App named {settings['Name']} already exists and is not this "
                            f"resource's ({existing}); choose another Name.")
        logger.info("Adopting %s, created by an earlier delivery of this request", existing)
        return existing
    parameters = {name: value for name, value in settings.items() if value != []}
    parameters["Tags"] = settings["Tags"] + owner.tags()
    try:
        return sagemaker.create_mlflow_app(**parameters)["Arn"]
    except ClientError as error:
        if not _role_not_assumable(error):
            raise
        if time.time() < retry_role_until:
            logger.info("SageMaker cannot assume %s yet (IAM propagation); trying again at the next poll",
                        settings["RoleArn"])
            return None
        raise AppFailed(
            f"SageMaker still cannot assume the role {settings['RoleArn']} after "
            f"{ROLE_PROPAGATION_SECONDS} s of retries: {error.response['Error'].get('Message', '')} "
            "Check that the role's trust policy lets sagemaker.amazonaws.com assume it, then retry."
        ) from error


def create_finished(sagemaker, arn: str) -> dict | None:
    """The app's attributes once it is created; None while SageMaker is still creating it."""
    app = _describe(sagemaker, arn)
    if app is None or app["Status"] == "Creating":
        return None
    if app["Status"] == "CreateFailed":
        # DescribeMlflowApp has no failure-reason field (botocore 1.44.5): the status is all there is.
        raise AppFailed(f"SageMaker could not create MLflow App {arn} (status CreateFailed). "
                        "Check the role's S3 and KMS access, then retry.")
    if app["Status"] in GONE:
        raise AppFailed(f"MLflow App {arn} was deleted while it was being created.")
    return attributes(app)


def start_update(sagemaker, arn: str, old: dict, new: dict) -> None:
    """Start an in-place update of what UpdateMlflowApp can change, and apply tag changes."""
    if properties.updatable_changes(old, new):
        _send_update(sagemaker, arn, new)
    _retag(sagemaker, arn, old["Tags"], new["Tags"])


def update_finished(sagemaker, arn: str, old: dict, new: dict) -> dict | None:
    """The app's attributes once it shows the changes; None while it is busy.

    The poll is stateless (crhelper re-sends the same event each minute), so it compares the app with
    the changes: an update refused earlier with ConflictException is sent again once the app is idle.
    """
    changes = properties.updatable_changes(old, new)
    app = _describe(sagemaker, arn)
    if app is None or app["Status"] in BUSY:
        return None
    if app["Status"] == "UpdateFailed":
        raise AppFailed(f"SageMaker could not update MLflow App {arn} (status UpdateFailed).")
    if app["Status"] in ("CreateFailed", "Deleted", "DeleteFailed"):
        raise AppFailed(f"MLflow App {arn} cannot be updated: its status is {app['Status']}.")
    if _shows(app, changes):
        return attributes(app)
    _send_update(sagemaker, arn, new)
    return None


def _send_update(sagemaker, arn: str, new: dict) -> None:
    """UpdateMlflowApp with the whole desired configuration, not only what changed: the API gives an
    omitted field a default (ModelRegistrationMode: AutoModelRegistrationEnabled, botocore's
    documentation of UpdateMlflowApp), so a change of the maintenance window alone would turn
    automatic registration back on."""
    try:
        sagemaker.update_mlflow_app(Arn=arn, **properties.update_parameters(new))
    except ClientError as error:
        if _code(error) != "ConflictException":
            raise
        # The app is busy (maintenance, an earlier change): update_finished sends it again.
        logger.info("MLflow App %s is busy; the update will be sent when it is idle", arn)


def start_delete(sagemaker, physical_id: str) -> None:
    if not is_app_arn(physical_id):
        # A create that failed before SageMaker returned an ARN: there is nothing to delete.
        logger.info("%s is not an MLflow App ARN; nothing to delete", physical_id)
        return
    try:
        sagemaker.delete_mlflow_app(Arn=physical_id)
    except ClientError as error:
        if _code(error) not in ("ResourceNotFound", "ConflictException"):
            raise


def delete_finished(sagemaker, physical_id: str) -> bool:
    if not is_app_arn(physical_id):
        return True
    app = _describe(sagemaker, physical_id, missing_ok=True)
    if app is None:
        return False
    if app == {} or app["Status"] == "Deleted":
        return True
    if app["Status"] == "DeleteFailed":
        raise AppFailed(f"SageMaker could not delete MLflow App {physical_id} (status DeleteFailed).")
    if app["Status"] not in BUSY:
        # A delete refused while the app was busy (ConflictException) is sent again now it is idle.
        start_delete(sagemaker, physical_id)
    return False


def discard(sagemaker, arn: str) -> None:
    """Delete an app CloudFormation will never hear of (a replacement that failed)."""
    try:
        start_delete(sagemaker, arn)
    except ClientError:
        logger.exception("Could not delete the failed MLflow App %s; delete it by hand", arn)


def find_app(sagemaker, name: str) -> str | None:
    """The ARN of the app called `name` that is not being deleted, if there is one."""
    for page in sagemaker.get_paginator("list_mlflow_apps").paginate():
        for summary in page["Summaries"]:
            if summary.get("Name") == name and summary.get("Status") not in GONE:
                return summary["Arn"]
    return None


def attributes(app: dict) -> dict:
    """What Fn::GetAtt returns."""
    return {
        "Arn": app["Arn"],
        "Name": app["Name"],
        "MlflowVersion": app.get("MlflowVersion", ""),
        "EndpointUrl": endpoint_url(app["Arn"]),
    }


def _shows(app: dict, changes: dict) -> bool:
    def comparable(name, value):
        return sorted(value or []) if name == "DefaultDomainIdList" else value

    return all(comparable(name, app.get(name)) == comparable(name, value) for name, value in changes.items())


def _retag(sagemaker, arn: str, old_tags: list, new_tags: list) -> None:
    new_keys = {tag["Key"] for tag in new_tags}
    removed = [tag["Key"] for tag in old_tags if tag["Key"] not in new_keys]
    if removed:
        sagemaker.delete_tags(ResourceArn=arn, TagKeys=removed)
    added = [tag for tag in new_tags if tag not in old_tags]
    if added:
        sagemaker.add_tags(ResourceArn=arn, Tags=added)


def _describe(sagemaker, arn: str, missing_ok: bool = False) -> dict | None:
    """DescribeMlflowApp; None when still throttled after botocore's retries (the next poll asks
    again), {} when the app does not exist and missing_ok."""
    try:
        return sagemaker.describe_mlflow_app(Arn=arn)
    except ClientError as error:
        if _code(error) in THROTTLING:
            return None
        if missing_ok and _code(error) == "ResourceNotFound":
            return {}
        raise


def _role_not_assumable(error: ClientError) -> bool:
    """SageMaker's refusal of a role it cannot assume: ValidationException "SageMaker is unable to
    perform: sts:AssumeRole on the role ...", what a role too new for IAM to have propagated gets."""
    message = error.response.get("Error", {}).get("Message", "")
    return _code(error) == "ValidationException" and "sts:assumerole" in message.lower()


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")
