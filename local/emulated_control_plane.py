"""SageMaker's control plane, for the one call the proxy makes to it: a presigned MLflow UI URL.

`POST /` with `X-Amz-Target: SageMaker.CreatePresignedMlflowTrackingServerUrl` or
`SageMaker.CreatePresignedMlflowAppUrl` (JSON 1.1, SigV4 service `sagemaker`), as botocore sends
it to api.sagemaker.<region>.amazonaws.com; the proxy reaches it through
AWS_ENDPOINT_URL_SAGEMAKER. The URL it answers with opens the local MLflow server's UI.

Where it is looser than AWS: the URL's token is random and never checked, and it never expires.
"""

import json
import secrets

TARGET_PREFIX = "SageMaker."


class ControlPlaneError(Exception):
    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def is_control_plane(headers: dict) -> bool:
    return headers.get("x-amz-target", "").startswith(TARGET_PREFIX)


def presigned_ui_url(target: str, body: bytes, resource_arn: str, ui_url: str) -> dict:
    """Answer one call for `resource_arn`; raises ControlPlaneError as AWS would refuse it."""
    operation = target[len(TARGET_PREFIX) :]
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        raise ControlPlaneError(400, "SerializationException", "The body is not JSON.") from None
    if operation == "CreatePresignedMlflowTrackingServerUrl":
        named = request.get("TrackingServerName")
        known = ":mlflow-tracking-server/" in resource_arn and named == resource_arn.rsplit("/", 1)[1]
    elif operation == "CreatePresignedMlflowAppUrl":
        named = request.get("Arn")
        known = named == resource_arn
    else:
        raise ControlPlaneError(400, "UnknownOperationException", f"Unknown operation {target}")
    if not known:
        raise ControlPlaneError(400, "ResourceNotFound", f"MLflow resource {named} not found.")
    return {"AuthorizedUrl": f"{ui_url}/?authToken={secrets.token_urlsafe(24)}"}
