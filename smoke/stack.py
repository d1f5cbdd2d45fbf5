"""The AWS part of the smoke test: the stack's outputs and its token secret, read with the
caller's own AWS credentials (boto3's default chain). Nothing after this needs them."""

import json
from dataclasses import dataclass, field
from typing import Optional

import boto3
from botocore.exceptions import BotoCoreError, ClientError

# The root template's outputs (template.yaml) the smoke test needs.
URL_OUTPUT = "ProxyUrl"
SECRET_OUTPUT = "TokenSecretArn"


class StackError(RuntimeError):
    """The stack or its secret cannot be read, or does not hold what the smoke test needs."""


@dataclass(frozen=True)
class Target:
    url: str
    token: str = field(repr=False)
    read_only_token: Optional[str] = field(repr=False)
    source: str


def tokens_from_secret(text: str) -> tuple[str, Optional[str]]:
    """(a read-write token, a read-only token or None) from the token document
    (docs/configuration.md#caller-tokens): one object or a list of them. Issuer entries and
    tokens stored as their SHA-256 hold no usable token and are passed over. The proxy validates
    the document; this only picks, and its messages never quote a token."""
    try:
        document = json.loads(text)
    except ValueError:
        raise StackError("the token secret is not JSON") from None
    entries = [e for e in (document if isinstance(document, list) else [document]) if isinstance(e, dict)]
    by_access = {}
    for entry in entries:
        if isinstance(entry.get("token"), str) and not entry["token"].startswith("sha256:"):
            by_access.setdefault(entry.get("access", "read-write"), entry["token"])
    if "read-write" not in by_access:
        raise StackError("the token secret holds no read-write token in clear (give URL= and TOKEN=)")
    return by_access["read-write"], by_access.get("read-only")


def target_from_stack(stack_name: str, region: Optional[str] = None) -> Target:
    session = boto3.session.Session(region_name=region)
    if session.region_name is None:
        raise StackError("no AWS region: give REGION= (or configure a default region)")
    where = f"stack {stack_name} in {session.region_name}"
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        missing = [name for name in (URL_OUTPUT, SECRET_OUTPUT) if name not in outputs]
        if missing:
            raise StackError(
                f"{where} ({stacks[0]['StackStatus']}) has no output {', '.join(missing)}"
            )
        secret = session.client("secretsmanager").get_secret_value(SecretId=outputs[SECRET_OUTPUT])
    except ClientError as error:
        raise StackError(f"{where}: {error}") from None
    except BotoCoreError as error:
        raise StackError(f"{where}: {error}") from None
    token, read_only_token = tokens_from_secret(secret["SecretString"])
    return Target(outputs[URL_OUTPUT].rstrip("/"), token, read_only_token, where)
