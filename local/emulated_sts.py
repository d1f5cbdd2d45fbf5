"""A minimal STS: AssumeRole of the stand-in roles, the keys the emulator accepts, and what
each identity's IAM policy allows (POLICIES).

Temporary credentials are stateless, like AWS's: the session token carries the key id, the role,
the session name and the expiry, sealed with an HMAC, and the secret is derived from the key id.
So credentials issued before an emulator restart stay valid after it, as they would when one STS
host goes away.
"""

import base64
import datetime
import hashlib
import hmac
import json
import re
import secrets
import uuid
from typing import Optional
from xml.sax.saxutils import escape

from local import fixed_credentials
from mlflow_proxy.iam_actions import MLFLOW_APP_ACTION, READ_ACTIONS, SERVICE_PREFIX
from local.sigv4_verifier import SignatureError

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
MIN_DURATION_SECONDS = 900
# IAM's default MaxSessionDuration for a role; the stand-in role keeps the default.
MAX_DURATION_SECONDS = 3600
DEFAULT_DURATION_SECONDS = 3600
ROLE_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
USER_ARN = f"arn:aws:iam::{fixed_credentials.ACCOUNT_ID}:user/stand-in"

# Each identity's identity-based policy: the actions it may call on the stand-in's MLflow ARNs,
# `service:*` meaning all of a service's. The roles are the stack's MlflowAccessRole and
# MlflowReadOnlyRole (nested/proxy.yaml), whose policies list the same actions.
POLICIES = {
    USER_ARN: frozenset({"*"}),
    fixed_credentials.ROLE_ARN: frozenset({f"{SERVICE_PREFIX}:*", MLFLOW_APP_ACTION}),
    fixed_credentials.READ_ONLY_ROLE_ARN: frozenset(
        {f"{SERVICE_PREFIX}:{action}" for action in READ_ACTIONS} | {MLFLOW_APP_ACTION}
    ),
}

# What STS calls the signature errors the SageMaker side names with x-amzn-ErrorType.
STS_ERROR_CODES = {
    "MissingAuthenticationTokenException": "MissingAuthenticationToken",
    "IncompleteSignatureException": "IncompleteSignature",
    "InvalidSignatureException": "SignatureDoesNotMatch",
    "UnrecognizedClientException": "InvalidClientTokenId",
    "ExpiredTokenException": "ExpiredToken",
}


class StsError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _seal(payload: bytes) -> str:
    return hmac.new(fixed_credentials.SESSION_TOKEN_KEY, payload, hashlib.sha256).hexdigest()


def _derived_secret(access_key_id: str) -> str:
    return _seal(b"secret:" + access_key_id.encode("ascii"))


def issue_credentials(
    duration_seconds: int,
    now: datetime.datetime,
    role_arn: str = fixed_credentials.ROLE_ARN,
    session_name: str = "stand-in",
) -> dict:
    access_key_id = "ASIA" + secrets.token_hex(8).upper()
    expiration = now + datetime.timedelta(seconds=duration_seconds)
    claims = {
        "akid": access_key_id,
        "exp": int(expiration.timestamp()),
        "role": role_arn,
        "session": session_name,
    }
    payload = json.dumps(claims).encode()
    token = base64.urlsafe_b64encode(payload).decode("ascii") + "." + _seal(payload)
    return {
        "AccessKeyId": access_key_id,
        "SecretAccessKey": _derived_secret(access_key_id),
        "SessionToken": token,
        "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def find_secret(
    access_key_id: str, session_token: Optional[str], now: datetime.datetime
) -> Optional[str]:
    """The secret for a key the stand-in knows, None for an unknown key or a foreign token."""
    if access_key_id == fixed_credentials.ACCESS_KEY_ID:
        return fixed_credentials.SECRET_ACCESS_KEY if session_token is None else None
    if not access_key_id.startswith("ASIA") or not session_token:
        return None
    encoded, _, seal = session_token.partition(".")
    try:
        payload = base64.urlsafe_b64decode(encoded.encode("ascii"))
        claims = json.loads(payload)
    except ValueError:
        return None
    if not hmac.compare_digest(_seal(payload), seal) or claims.get("akid") != access_key_id:
        return None
    if claims["exp"] <= now.timestamp():
        raise SignatureError(
            "ExpiredTokenException", "The security token included in the request is expired"
        )
    return _derived_secret(access_key_id)


def caller_of(access_key_id: str, session_token: Optional[str]) -> tuple:
    """(the identity whose policy applies, the ARN AWS names in an AccessDenied message) for a
    key that find_secret accepted."""
    if session_token is None:
        return USER_ARN, USER_ARN
    claims = json.loads(base64.urlsafe_b64decode(session_token.partition(".")[0].encode()))
    role_arn, session_name = claims["role"], claims["session"]
    role_name = role_arn.rsplit("/", 1)[-1]
    session_arn = (
        f"arn:aws:sts::{fixed_credentials.ACCOUNT_ID}:assumed-role/{role_name}/{session_name}"
    )
    return role_arn, session_arn


def is_allowed(identity: str, action: str) -> bool:
    allowed = POLICIES.get(identity, frozenset())
    service = action.partition(":")[0]
    return "*" in allowed or f"{service}:*" in allowed or action in allowed


def assume_role(form: dict, now: datetime.datetime) -> str:
    """AssumeRole's XML response for a verified caller's form, or StsError."""
    if form.get("Action") != "AssumeRole":
        raise StsError(400, "InvalidAction", f"Could not find operation {form.get('Action')!r}")
    role_arn = form.get("RoleArn", "")
    session_name = form.get("RoleSessionName", "")
    if not role_arn or not session_name:
        raise StsError(400, "ValidationError", "RoleArn and RoleSessionName are required.")
    if not ROLE_SESSION_NAME.match(session_name):
        raise StsError(
            400,
            "ValidationError",
            f"1 validation error detected: Value '{session_name}' at 'roleSessionName' failed to "
            r"satisfy constraint: Member must satisfy regular expression pattern: [\w+=,.@-]*",
        )
    try:
        duration = int(form.get("DurationSeconds", DEFAULT_DURATION_SECONDS))
    except ValueError:
        raise StsError(400, "ValidationError", "DurationSeconds must be an integer.") from None
    if duration < MIN_DURATION_SECONDS:
        raise StsError(
            400,
            "ValidationError",
            f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to "
            f"satisfy constraint: Member must have value greater than or equal to "
            f"{MIN_DURATION_SECONDS}",
        )
    if duration > MAX_DURATION_SECONDS:
        raise StsError(
            400,
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        )
    if role_arn not in (fixed_credentials.ROLE_ARN, fixed_credentials.READ_ONLY_ROLE_ARN):
        raise StsError(
            403,
            "AccessDenied",
            f"User: {USER_ARN} is not authorized to perform: sts:AssumeRole on resource: "
            f"{role_arn}",
        )

    credentials = issue_credentials(duration, now, role_arn, session_name)
    _, session_arn = caller_of(credentials["AccessKeyId"], credentials["SessionToken"])
    return f"""<AssumeRoleResponse xmlns="{STS_NAMESPACE}">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>{credentials["AccessKeyId"]}</AccessKeyId>
      <SecretAccessKey>{credentials["SecretAccessKey"]}</SecretAccessKey>
      <SessionToken>{escape(credentials["SessionToken"])}</SessionToken>
      <Expiration>{credentials["Expiration"]}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <AssumedRoleId>AROASTANDIN000000001:{escape(session_name)}</AssumedRoleId>
      <Arn>{escape(session_arn)}</Arn>
    </AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>{uuid.uuid4()}</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>
"""


def error_response_xml(code: str, message: str) -> str:
    kind = "Receiver" if code == "InternalFailure" else "Sender"
    return f"""<ErrorResponse xmlns="{STS_NAMESPACE}">
  <Error>
    <Type>{kind}</Type>
    <Code>{escape(code)}</Code>
    <Message>{escape(message)}</Message>
  </Error>
  <RequestId>{uuid.uuid4()}</RequestId>
</ErrorResponse>
"""
