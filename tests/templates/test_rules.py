"""The root template's Rules: bad parameter combinations fail before anything is created.

CloudFormation evaluates Rules itself; offline, these tests evaluate them with the few
functions Rules allow, over the parameter values a user would give."""

import re

import pytest

from template_support import region_resource_types, template_resource_types


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


GOOD = {}  # the plain `sam deploy`: every parameter at its default
ALB = {"PublicAccess": "alb", "AllowedCidr": "203.0.113.0/24"}
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-4e5f"
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
    {**GOOD, **EXISTING_VPC, "ExistingPublicSubnetIds": ""},  # CloudFront needs no public subnets
    {**ALB, **EXISTING_VPC},
    {**ALB, **EXISTING_VPC, "ExistingPublicSubnetIds": "", "PublicAccess": "none"},
    {**GOOD, "MinInstances": 1, "DesiredInstances": 1, "MaxInstances": 2},
    {**GOOD, "MinInstances": 3, "DesiredInstances": 7, "MaxInstances": 10},
    {**GOOD, "NumberOfAzs": 3},
    {**GOOD, "NumberOfAzs": 3, "AvailabilityZones": "eu-west-1a,eu-west-1b,eu-west-1c"},
    ALB,
    {**ALB, "MlflowType": "serverless"},
    # Anyone may reach the proxy when tokens travel encrypted, or only inside the network.
    {**ALB, "AllowedCidr": "0.0.0.0/0", "CertificateArn": CERTIFICATE},
    {**ALB, "AllowedCidr": "0.0.0.0/0", "PublicAccess": "none", **EXISTING_VPC},
])
def test_good_combinations_pass(root, overrides):
    assert failed_rules(root, **overrides) == []


@pytest.mark.parametrize("overrides, region, rule", [
    ({"MinInstances": 3, "DesiredInstances": 2, "MaxInstances": 4}, "us-east-1", "DesiredBetweenMinAndMax"),
    ({"MinInstances": 9, "DesiredInstances": 8, "MaxInstances": 10}, "us-east-1", "DesiredBetweenMinAndMax"),
    ({"MinInstances": 1, "DesiredInstances": 5, "MaxInstances": 4}, "us-east-1", "DesiredBetweenMinAndMax"),
    ({"MinInstances": 2, "DesiredInstances": 2, "MaxInstances": 2}, "us-east-1", "RollingUpdatesNeedRoom"),
    ({"ExistingVpcId": "vpc-0123456789abcdef0"}, "us-east-1", "ExistingVpcNeedsItsSubnets"),
    ({**ALB, **EXISTING_VPC, "ExistingPublicSubnetIds": ""}, "us-east-1", "ExistingVpcNeedsItsSubnets"),
    ({"ExistingPrivateSubnetIds": "subnet-0123456789abcdef0"}, "us-east-1", "SubnetsNeedTheirVpc"),
    ({"NumberOfAzs": 3}, "us-west-1", "ThreeAzsNeedARegionWithThree"),
    ({"MlflowType": "tracking"}, "ap-southeast-6", "TrackingServerRegion"),
    ({**ALB, "AllowedCidr": "0.0.0.0/0"}, "us-east-1", "NoClearTextTokensFromTheInternet"),
    ({"PublicAccess": "alb"}, "us-east-1", "LoadBalancerAccessNeedsAllowedCidr"),
    ({"PublicAccess": "none"}, "us-east-1", "LoadBalancerAccessNeedsAllowedCidr"),
    ({"AllowedCidr": "203.0.113.0/24"}, "us-east-1", "CloudFrontNeedsNoCidrOrCertificate"),
    ({"CertificateArn": CERTIFICATE}, "us-east-1", "CloudFrontNeedsNoCidrOrCertificate"),
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


def test_clear_text_rule_tells_the_user_the_three_ways_out(root):
    (assertion,) = root["Rules"]["NoClearTextTokensFromTheInternet"]["Assertions"]
    for way_out in ("cloudfront", "CertificateArn", "AllowedCidr", "none"):
        assert way_out in assertion["AssertDescription"]


@pytest.mark.parametrize("instance_type", [
    "t3.small", "t3a.medium", "t2.micro", "m5.large", "m5zn.large", "m7i-flex.large", "m7a.xlarge",
    "c6in.xlarge", "c7i.large", "r6i.large", "r7iz.large", "m4.large",
])
def test_x86_instance_types_are_accepted(root, instance_type):
    assert re.fullmatch(root["Parameters"]["InstanceType"]["AllowedPattern"], instance_type)


@pytest.mark.parametrize("instance_type", [
    "t4g.small", "m6g.large", "m6gd.large", "m7g.large", "m8g.large", "c6gn.large", "c7g.large",
    "c7gn.xlarge", "r6g.large", "r8g.large", "a1.large", "x2gd.large", "t3.small ", "T3.small",
])
def test_arm64_instance_types_are_rejected(root, instance_type):
    # The AMI is Ubuntu's amd64 image: a Graviton instance could not boot it.
    parameter = root["Parameters"]["InstanceType"]
    assert not re.fullmatch(parameter["AllowedPattern"], instance_type)
    assert "x86_64" in parameter["ConstraintDescription"]


@pytest.mark.parametrize("mode", ["tracking", "serverless"])
def test_the_plain_deploy_command_passes_every_rule_with_no_other_input(root, mode):
    # `sam deploy --parameter-overrides MlflowType=serverless`, and the same without it.
    for name, parameter in root["Parameters"].items():
        assert "Default" in parameter, f"{name} has no default: the plain `sam deploy` would stop for it"
    assert root["Parameters"]["PublicAccess"]["Default"] == "cloudfront"
    assert failed_rules(root, MlflowType=mode) == []


@pytest.mark.parametrize("zones, accepted", [
    ("", True), ("us-east-1a,us-east-1b", True), ("eu-west-1a,eu-west-1b,eu-west-1c", True),
    ("ap-southeast-2a,ap-southeast-2c", True), ("us-east-1a", False), ("us-east-1a, us-east-1b", False),
    ("use1-az1,use1-az2", False), ("us-east-1a,us-east-1b,us-east-1c,us-east-1d", False),
])
def test_availability_zones_are_blank_or_two_to_three_zone_names(root, zones, accepted):
    assert bool(re.fullmatch(root["Parameters"]["AvailabilityZones"]["AllowedPattern"], zones)) == accepted
