"""The read-only MLflow role: what read-only callers' requests are signed as, so that IAM refuses
their writes even when the proxy's allow-list lets one through (docs/security-iam.md)."""

import re

from mlflow_proxy.iam_actions import ENDPOINT_ACTIONS, READ_ACTIONS, SERVICE_PREFIX, WRITE_ACTIONS
from mlflow_proxy.callers import Caller
from template_support import resources_of_type
from test_security import as_list, policy_statements, user_data


def read_only_statements(proxy):
    """(the statement for both modes, the MLflow App's extra one) of the role's policy."""
    role = proxy["Resources"]["MlflowReadOnlyRole"]
    (policy,) = role["Properties"]["Policies"]
    both, conditional = policy["PolicyDocument"]["Statement"]
    condition, serverless, tracking = conditional["Fn::If"]
    assert (condition, tracking) == ("IsServerless", {"Ref": "AWS::NoValue"})
    return both, serverless


def test_the_role_may_call_the_read_actions_only_on_the_one_mlflow_arn(proxy):
    both, _ = read_only_statements(proxy)
    assert (both["Effect"], both["Resource"]) == ("Allow", {"Ref": "MlflowArn"})
    granted = set(as_list(both["Action"]))
    assert granted == {f"{SERVICE_PREFIX}:{action}" for action in READ_ACTIONS}
    assert not granted & {f"{SERVICE_PREFIX}:{action}" for action in WRITE_ACTIONS}
    assert not [action for action in granted if "*" in action]


def test_on_an_mlflow_app_it_adds_the_one_action_every_call_needs(proxy):
    _, serverless = read_only_statements(proxy)
    assert serverless == {
        "Effect": "Allow",
        "Action": "sagemaker:CallMlflowAppApi",
        "Resource": {"Ref": "MlflowArn"},
    }


def test_the_role_reaches_neither_s3_nor_the_ui(proxy):
    role = proxy["Resources"]["MlflowReadOnlyRole"]
    granted = str(policy_statements(role))
    assert "s3:" not in granted and "Presigned" not in granted and "AccessUI" not in granted
    assert "ManagedPolicyArns" not in role["Properties"]


def test_only_the_instances_may_assume_it_and_they_are_told_to(proxy):
    role = proxy["Resources"]["MlflowReadOnlyRole"]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Fn::GetAtt": ["InstanceRole", "Arn"]}}
    (assume,) = policy_statements(proxy["Resources"]["InstanceMayAssumeMlflowAccessRole"])
    assert {"Fn::GetAtt": ["MlflowReadOnlyRole", "Arn"]} in as_list(assume["Resource"])
    assert "SM_MLFLOW_READ_ONLY_ROLE_ARN=${MlflowReadOnlyRole.Arn}\n" in user_data(proxy)
    # In both modes: the user data names it whatever the mode.
    assert not resources_of_type(proxy, "AWS::IAM::Role")["MlflowReadOnlyRole"].get("Condition")


def test_the_proxys_allow_list_and_iams_read_actions_agree():
    # A call the proxy lets a read-only caller make must be one the role may make, or reads
    # fail; a call IAM counts as a write must be one the proxy refuses too.
    reader = Caller(name="dashboards", read_only=True)
    disagreements = []
    for method, path, action in ENDPOINT_ACTIONS:
        concrete = "/api/" + re.sub(r"\{\w+\}", "x1", path)
        for prefix in ("/api/", "/ajax-api/"):
            url = prefix + concrete[len("/api/") :]
            if reader.may_call(method, url) != (action in READ_ACTIONS):
                disagreements.append((method, url, action))
    assert disagreements == []
