"""Create, update and delete an MLflow App in short steps, with no waiter to lean on.

Each change has two halves. A `start_*` function makes the call that starts the work and returns at
once; a `*_finished` function is polled (crhelper re-invokes the Lambda every minute) and reports
whether the app has reached the state the start asked for. Nothing here waits longer than a short
back-off, so no Lambda times out however long SageMaker takes.

`settings` are the parsed resource properties (properties.parse): CreateMlflowApp's parameters.
"""

import logging
import re
import time
from dataclasses import dataclass

from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)

APP_ARN_PATTERN = re.compile(r"arn:aws[a-z\-]*:sagemaker:([a-z0-9\-]+):[0-9]{12}:mlflow-app/.+")
BUSY = ("Creating", "Updating", "Deleting")
GONE = ("Deleting", "Deleted")
THROTTLING = ("ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded")
BACKOFF_SECONDS = (1, 2, 4, 8, 16)


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


def start_create(sagemaker, settings: dict, owner: Owner, sleep=time.sleep) -> str:
    """Create the app, or adopt the one an earlier delivery of this request created. Returns its ARN."""
    existing = find_app(sagemaker, settings["Name"], sleep)
    if existing:
        tags = _call(sleep, sagemaker.list_tags, ResourceArn=existing)["Tags"]
        if not owner.owns(tags):
            raise AppFailed(f"An MLflow App named {settings['Name']} already exists and is not this "
                            f"resource's ({existing}); choose another Name.")
        logger.info("Adopting %s, created by an earlier delivery of this request", existing)
        return existing
    parameters = {name: value for name, value in settings.items() if value != []}
    parameters["Tags"] = settings["Tags"] + owner.tags()
    return _call(sleep, sagemaker.create_mlflow_app, **parameters)["Arn"]


def create_finished(sagemaker, arn: str, sleep=time.sleep) -> dict | None:
    """The app's attributes once it is created; None while SageMaker is still creating it."""
    app = _describe(sagemaker, arn, sleep)
    if app is None or app["Status"] == "Creating":
        return None
    if app["Status"] == "CreateFailed":
        # DescribeMlflowApp has no failure-reason field (botocore 1.44.5): the status is all there is.
        raise AppFailed(f"SageMaker could not create MLflow App {arn} (status CreateFailed). "
                        "Check the role's S3 and KMS access, then retry.")
    if app["Status"] in GONE:
        raise AppFailed(f"MLflow App {arn} was deleted while it was being created.")
    return attributes(app)


def start_update(sagemaker, arn: str, old: dict, new: dict, changes: dict, sleep=time.sleep) -> None:
    """Start an in-place update of what UpdateMlflowApp can change, and apply tag changes."""
    if changes:
        try:
            _call(sleep, sagemaker.update_mlflow_app, Arn=arn, **changes)
        except ClientError as error:
            if _code(error) != "ConflictException":
                raise
            # The app is busy (maintenance, an earlier change): update_finished sends it again.
            logger.info("MLflow App %s is busy; the update will be sent when it is idle", arn)
    _retag(sagemaker, arn, old["Tags"], new["Tags"], sleep)


def update_finished(sagemaker, arn: str, changes: dict, sleep=time.sleep) -> dict | None:
    """The app's attributes once it shows the changes; None while it is busy.

    The poll is stateless (crhelper re-sends the same event each minute), so it compares the app with
    the changes: an update refused earlier with ConflictException is sent again once the app is idle.
    """
    app = _describe(sagemaker, arn, sleep)
    if app is None or app["Status"] in BUSY:
        return None
    if app["Status"] == "UpdateFailed":
        raise AppFailed(f"SageMaker could not update MLflow App {arn} (status UpdateFailed).")
    if app["Status"] in ("CreateFailed", "Deleted", "DeleteFailed"):
        raise AppFailed(f"MLflow App {arn} cannot be updated: its status is {app['Status']}.")
    if _shows(app, changes):
        return attributes(app)
    try:
        _call(sleep, sagemaker.update_mlflow_app, Arn=arn, **changes)
    except ClientError as error:
        if _code(error) != "ConflictException":
            raise
    return None


def start_delete(sagemaker, physical_id: str, sleep=time.sleep) -> None:
    if not is_app_arn(physical_id):
        # A create that failed before SageMaker returned an ARN: there is nothing to delete.
        logger.info("%s is not an MLflow App ARN; nothing to delete", physical_id)
        return
    try:
        _call(sleep, sagemaker.delete_mlflow_app, Arn=physical_id)
    except ClientError as error:
        if _code(error) not in ("ResourceNotFound", "ConflictException"):
            raise


def delete_finished(sagemaker, physical_id: str, sleep=time.sleep) -> bool:
    if not is_app_arn(physical_id):
        return True
    app = _describe(sagemaker, physical_id, sleep, missing_ok=True)
    if app is None:
        return False
    if app == {} or app["Status"] == "Deleted":
        return True
    if app["Status"] == "DeleteFailed":
        raise AppFailed(f"SageMaker could not delete MLflow App {physical_id} (status DeleteFailed).")
    if app["Status"] not in BUSY:
        # A delete refused while the app was busy (ConflictException) is sent again now it is idle.
        start_delete(sagemaker, physical_id, sleep)
    return False


def discard(sagemaker, arn: str, sleep=time.sleep) -> None:
    """Delete an app CloudFormation will never hear of (a replacement that failed)."""
    try:
        start_delete(sagemaker, arn, sleep)
    except ClientError:
        logger.exception("Could not delete the failed MLflow App %s; delete it by hand", arn)


def find_app(sagemaker, name: str, sleep=time.sleep) -> str | None:
    """The ARN of the app called `name` that is not being deleted, if there is one."""
    parameters = {}
    while True:
        page = _call(sleep, sagemaker.list_mlflow_apps, **parameters)
        for summary in page["Summaries"]:
            if summary.get("Name") == name and summary.get("Status") not in GONE:
                return summary["Arn"]
        if not page.get("NextToken"):
            return None
        parameters["NextToken"] = page["NextToken"]


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


def _retag(sagemaker, arn: str, old_tags: list, new_tags: list, sleep) -> None:
    new_keys = {tag["Key"] for tag in new_tags}
    removed = [tag["Key"] for tag in old_tags if tag["Key"] not in new_keys]
    if removed:
        _call(sleep, sagemaker.delete_tags, ResourceArn=arn, TagKeys=removed)
    added = [tag for tag in new_tags if tag not in old_tags]
    if added:
        _call(sleep, sagemaker.add_tags, ResourceArn=arn, Tags=added)


def _describe(sagemaker, arn: str, sleep, missing_ok: bool = False) -> dict | None:
    """DescribeMlflowApp; None when still throttled after the back-off (the next poll asks again),
    {} when the app does not exist and missing_ok."""
    try:
        return _call(sleep, sagemaker.describe_mlflow_app, Arn=arn)
    except ClientError as error:
        if _code(error) in THROTTLING:
            return None
        if missing_ok and _code(error) == "ResourceNotFound":
            return {}
        raise


def _call(sleep, operation, **parameters):
    """Call a SageMaker operation, backing off while it is throttled."""
    for delay in BACKOFF_SECONDS:
        try:
            return operation(**parameters)
        except ClientError as error:
            if _code(error) not in THROTTLING:
                raise
            logger.info("Throttled; retrying in %s s", delay)
            sleep(delay)
    return operation(**parameters)


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")
