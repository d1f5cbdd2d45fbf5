"""The root template's Rules: bad parameter combinations fail before anything is created.

CloudFormation evaluates Rules itself; offline, these tests evaluate them with the few
functions Rules allow, over the parameter values a user would give."""

import pytest

from conftest import region_resource_types, template_resource_types


def evaluate(node, values):
    if isinstance(node, list):
        return [evaluate(item, values) for item in node]
    if not isinstance(node, dict):
        return str(node)
    ((function, argument),) = node.items()
    if function == "Ref":
        return values[argument]
    argument = evaluate(argument, values)
    if function == "Fn::Equals":
        return argument[0] == argument[1]
    if function == "Fn::Not":
        return not argument[0]
    if function == "Fn::And":
        return all(argument)
    if function == "Fn::Or":
        return any(argument)
    if function == "Fn::Contains":
        return argument[1] in argument[0]
    raise AssertionError(f"{function} is not evaluated here: extend evaluate()")


def failed_rules(root, region="us-east-1", **overrides):
    values = {name: str(p.get("Default", "")) for name, p in root["Parameters"].items()}
    values.update({k: str(v) for k, v in overrides.items()}, **{"AWS::Region": region})
    failed = []
    for name, rule in root["Rules"].items():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], values):
            continue
        if not all(evaluate(a["Assert"], values) for a in rule["Assertions"]):
            failed.append(name)
    return failed


GOOD = {"AllowedCidr": "203.0.113.0/24"}
EXISTING_VPC = {
    "ExistingVpcId": "vpc-0123456789abcdef0",
    "ExistingPrivateSubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "ExistingPublicSubnetIds": "subnet-0123456789abcdef2,subnet-0123456789abcdef3",
}


def test_every_assertion_explains_itself(root):
    for name, rule in root["Rules"].items():
        for assertion in rule["Assertions"]:
            assert len(assertion.get("AssertDescription", "")) > 20, f"{name} fails without saying why"


@pytest.mark.parametrize("overrides", [
    GOOD,
    {**GOOD, "MlflowType": "serverless"},
    {**GOOD, **EXISTING_VPC, "ExistingDomainId": "d-abcdef123456"},
    {**GOOD, **EXISTING_VPC, "ExistingPublicSubnetIds": "", "LoadBalancerScheme": "internal"},
    {**GOOD, "MinInstances": 1, "DesiredInstances": 1, "MaxInstances": 2},
    {**GOOD, "MinInstances": 3, "DesiredInstances": 7, "MaxInstances": 10},
    {**GOOD, "NumberOfAzs": 3},
])
def test_good_combinations_pass(root, overrides):
    assert failed_rules(root, **overrides) == []


@pytest.mark.parametrize("overrides, region, rule", [
    ({"MinInstances": 3, "DesiredInstances": 2, "MaxInstances": 4}, "us-east-1", "DesiredBetweenMinAndMax"),
    ({"MinInstances": 9, "DesiredInstances": 8, "MaxInstances": 10}, "us-east-1", "DesiredBetweenMinAndMax"),
    ({"MinInstances": 1, "DesiredInstances": 5, "MaxInstances": 4}, "us-east-1", "DesiredBetweenMinAndMax"),
    ({"MinInstances": 2, "DesiredInstances": 2, "MaxInstances": 2}, "us-east-1", "RollingUpdatesNeedRoom"),
    ({"ExistingVpcId": "vpc-0123456789abcdef0"}, "us-east-1", "ExistingVpcNeedsItsSubnets"),
    ({**EXISTING_VPC, "ExistingPublicSubnetIds": ""}, "us-east-1", "ExistingVpcNeedsItsSubnets"),
    ({"ExistingPrivateSubnetIds": "subnet-0123456789abcdef0"}, "us-east-1", "SubnetsNeedTheirVpc"),
    ({"NumberOfAzs": 3}, "us-west-1", "ThreeAzsNeedARegionWithThree"),
    ({"MlflowType": "tracking"}, "ap-southeast-6", "TrackingServerRegion"),
])
def test_bad_combinations_are_rejected(root, overrides, region, rule):
    assert failed_rules(root, region=region, **{**GOOD, **overrides}) == [rule]


def test_tracking_rule_names_every_region_without_tracking_servers(root):
    rule = root["Rules"]["TrackingServerRegion"]
    (assertion,) = rule["Assertions"]
    listed = set(assertion["Assert"]["Fn::Not"][0]["Fn::Contains"][0])
    lacking = {r for r, types in region_resource_types().items()
               if "AWS::SageMaker::MlflowTrackingServer" not in types}
    assert listed == lacking


def test_serverless_mode_is_rejected_nowhere_the_tracking_rule_allows(root):
    # The tracking-region rule must not block the other mode there.
    assert failed_rules(root, region="ap-southeast-6", **GOOD, MlflowType="serverless") == []


def test_domain_rule_names_every_region_without_domains(root, templates):
    (assertion,) = root["Rules"]["DomainRegion"]["Assertions"]
    listed = set(assertion["Assert"]["Fn::Not"][0]["Fn::Contains"][0])
    domain_types = template_resource_types({"d": templates["nested/sagemaker-domain.yaml"]})
    lacking = {r for r, types in region_resource_types().items() if not domain_types <= types}
    assert listed == lacking
    region = sorted(lacking)[0]
    assert failed_rules(root, region=region, **GOOD, MlflowType="serverless") == ["DomainRegion"]
    assert failed_rules(root, region=region, **GOOD, MlflowType="serverless",
                        ExistingDomainId="d-abcdef123456") == []
