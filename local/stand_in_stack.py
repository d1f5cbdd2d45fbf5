"""A stand-in for a deployed stack, for the smoke test's AWS part: a CloudFormation stack with
the root template's outputs the smoke test reads (ProxyUrl, TokenSecretArn) and a token secret
of the shape the stack generates, created in moto (mock_aws, or a moto server through
AWS_ENDPOINT_URL).

moto cannot create AWS::SecretsManager::Secret from a template, so the secret is created first
and the stack outputs its ARN; the stack's other outputs but ProxyLogGroupName are left out.
"""

import json
import secrets
import string

# What template.yaml's TokenSecret generates: SecretStringTemplate plus a 40-character token
# without punctuation (GenerateStringKey: token).
ALPHANUMERIC = string.ascii_letters + string.digits


def generated_secret_string() -> str:
    token = "".join(secrets.choice(ALPHANUMERIC) for _ in range(40))
    return json.dumps({"name": "admin", "access": "read-write", "token": token})


TEMPLATE = {
    "Parameters": {"ProxyUrl": {"Type": "String"}, "TokenSecretArn": {"Type": "String"}},
    # A stack needs a resource: the proxy's log group, as the real stack has.
    "Resources": {"ProxyLogGroup": {"Type": "AWS::Logs::LogGroup"}},
    "Outputs": {
        "ProxyUrl": {"Value": {"Ref": "ProxyUrl"}},
        "TokenSecretArn": {"Value": {"Ref": "TokenSecretArn"}},
        "ProxyLogGroupName": {"Value": {"Ref": "ProxyLogGroup"}},
    },
}


def create_stack(
    session, stack_name: str, proxy_url: str, secret_string: str, endpoint_url=None
) -> str:
    """Create the secret and the stack in `session`'s region (at `endpoint_url`, a moto server,
    if given); returns the secret's ARN."""
    secret_arn = session.client("secretsmanager", endpoint_url=endpoint_url).create_secret(
        Name=f"{stack_name}-tokens", SecretString=secret_string
    )["ARN"]
    session.client("cloudformation", endpoint_url=endpoint_url).create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(TEMPLATE),
        Parameters=[
            {"ParameterKey": "ProxyUrl", "ParameterValue": proxy_url},
            {"ParameterKey": "TokenSecretArn", "ParameterValue": secret_arn},
        ],
    )
    return secret_arn
