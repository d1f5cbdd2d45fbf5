import datetime
import json
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError

from local import fixed_credentials
from local.sagemaker_emulator import SageMakerEmulator
from tests.unit.local.signed_wire import send, serving, sign, signed_for


class FrozenClock:
    """The emulator's clock, frozen by each test at the moment it starts (botocore signs with
    the real clock, so a time frozen at import would be stale by the time a slow run gets here)."""

    def __init__(self):
        self.frozen_at = None

    def __call__(self) -> datetime.datetime:
        return self.frozen_at


@pytest.fixture(scope="module")
def clock():
    return FrozenClock()


@pytest.fixture(autouse=True)
def now(clock):
    clock.frozen_at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return clock.frozen_at


@pytest.fixture(scope="module")
def sts_emulator(mlflow_double, clock):
    app = SageMakerEmulator("tracking", mlflow_double.url, clock=clock)
    with serving(app) as url:
        app.url = url
        yield app


def sts_client(
    url, access_key=fixed_credentials.ACCESS_KEY_ID, secret=fixed_credentials.SECRET_ACCESS_KEY
):
    return boto3.client(
        "sts",
        region_name=fixed_credentials.REGION,
        endpoint_url=url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
    )


def test_assume_role_issues_credentials_the_emulator_accepts(sts_emulator, now):
    calls_before = sts_emulator.assume_role_calls
    answer = sts_client(sts_emulator.url).assume_role(
        RoleArn=fixed_credentials.ROLE_ARN, RoleSessionName="unit-test", DurationSeconds=900
    )

    issued = answer["Credentials"]
    assert issued["AccessKeyId"].startswith("ASIA")
    assert issued["Expiration"] == now + datetime.timedelta(seconds=900)
    assert answer["AssumedRoleUser"]["Arn"].endswith(
        ":assumed-role/mlflow-proxy-stand-in/unit-test"
    )
    assert sts_emulator.assume_role_calls == calls_before + 1

    session = boto3.Session(
        issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"]
    )
    request = signed_for(sts_emulator, credentials=session.get_credentials())
    status, _, body = send(request)
    assert status == 200, body


def test_assume_role_with_an_unknown_key_is_refused(sts_emulator):
    calls_before = sts_emulator.assume_role_calls
    with pytest.raises(ClientError) as raised:
        sts_client(sts_emulator.url, access_key="AKIAUNKNOWN000000000").assume_role(
            RoleArn=fixed_credentials.ROLE_ARN, RoleSessionName="unit-test"
        )
    assert raised.value.response["Error"]["Code"] == "InvalidClientTokenId"
    assert sts_emulator.assume_role_calls == calls_before


def test_assume_role_of_another_role_is_access_denied(sts_emulator):
    with pytest.raises(ClientError) as raised:
        sts_client(sts_emulator.url).assume_role(
            RoleArn=f"arn:aws:iam::{fixed_credentials.ACCOUNT_ID}:role/other", RoleSessionName="x1"
        )
    assert raised.value.response["Error"]["Code"] == "AccessDenied"


@pytest.mark.parametrize(
    "duration, message",
    [
        ("899", "greater than or equal to 900"),
        ("3601", "MaxSessionDuration"),
    ],
)
def test_duration_seconds_outside_what_aws_allows_is_a_validation_error(
    sts_emulator, duration, message
):
    # botocore would refuse 899 itself, so the form is sent signed but by hand.
    body = (
        "Action=AssumeRole&Version=2011-06-15&RoleSessionName=unit-test&DurationSeconds="
        f"{duration}&RoleArn={fixed_credentials.ROLE_ARN}"
    ).encode()
    request = sign(
        sts_emulator.url + "/",
        method="POST",
        body=body,
        service="sts",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    status, _, answer = send(request)
    assert status == 400
    assert b"<Code>ValidationError</Code>" in answer
    assert message.encode() in answer


def test_sts_signature_is_checked_with_service_sts(sts_emulator):
    body = (
        b"Action=AssumeRole&Version=2011-06-15&RoleSessionName=unit-test&RoleArn="
        + fixed_credentials.ROLE_ARN.encode()
    )
    request = sign(
        sts_emulator.url + "/",
        method="POST",
        body=body,
        service="sagemaker",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    status, _, answer = send(request)
    assert status == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in answer


def test_stats_count_assume_role_calls(sts_emulator):
    before = json.load(urllib.request.urlopen(sts_emulator.url + "/__stand-in/stats"))
    sts_client(sts_emulator.url).assume_role(
        RoleArn=fixed_credentials.ROLE_ARN, RoleSessionName="s1"
    )
    after = json.load(urllib.request.urlopen(sts_emulator.url + "/__stand-in/stats"))
    assert after["assume_role_calls"] == before["assume_role_calls"] + 1


def test_the_read_only_role_is_assumed_and_counted_on_its_own(sts_emulator):
    role = fixed_credentials.READ_ONLY_ROLE_ARN
    before = json.load(urllib.request.urlopen(sts_emulator.url + "/__stand-in/stats"))
    answer = sts_client(sts_emulator.url).assume_role(RoleArn=role, RoleSessionName="reader")
    assert answer["AssumedRoleUser"]["Arn"].endswith(
        ":assumed-role/mlflow-proxy-stand-in-read-only/reader"
    )
    after = json.load(urllib.request.urlopen(sts_emulator.url + "/__stand-in/stats"))
    by_role_before = before["assume_role_calls_by_role"]
    assert after["assume_role_calls_by_role"] == {
        **by_role_before,
        role: by_role_before.get(role, 0) + 1,
    }
