"""The emulator's SageMaker control plane, called with botocore's own sagemaker client (the
client the proxy's /ui uses), so the wire format is the real one."""

import botocore.session
import pytest
from botocore.exceptions import ClientError

from local import fixed_credentials
from local.sagemaker_emulator import MODES


def sagemaker_client(endpoint_url, secret_key=fixed_credentials.SECRET_ACCESS_KEY):
    return botocore.session.Session().create_client(
        "sagemaker",
        region_name=fixed_credentials.REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id=fixed_credentials.ACCESS_KEY_ID,
        aws_secret_access_key=secret_key,
    )


def presigned_url(client, mode):
    arn = MODES[mode].resource_arn
    if mode == "serverless":
        return client.create_presigned_mlflow_app_url(Arn=arn)
    return client.create_presigned_mlflow_tracking_server_url(TrackingServerName=arn.rsplit("/", 1)[1])


def test_the_presigned_ui_url_opens_the_mlflow_server(emulator, mode, mlflow_double):
    answer = presigned_url(sagemaker_client(emulator.url), mode)
    assert answer["AuthorizedUrl"].startswith(mlflow_double.url + "/?authToken=")
    # Each call gives a new URL, as SageMaker's are single-use.
    assert presigned_url(sagemaker_client(emulator.url), mode) != answer


def test_another_resource_is_not_found(emulator, mode):
    client = sagemaker_client(emulator.url)
    with pytest.raises(ClientError) as refused:
        if mode == "serverless":
            client.create_presigned_mlflow_app_url(
                Arn=MODES[mode].resource_arn.replace("STANDIN", "OTHERXX")
            )
        else:
            client.create_presigned_mlflow_tracking_server_url(TrackingServerName="other")
    assert refused.value.response["Error"]["Code"] == "ResourceNotFound"


def test_a_bad_signature_is_refused(emulator, mode):
    with pytest.raises(ClientError) as refused:
        presigned_url(sagemaker_client(emulator.url, secret_key="not-the-secret"), mode)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
