"""Security properties of the templates that a plausible edit could silently break."""

import re
import subprocess

import pytest

from template_support import ROOT, TEMPLATE_FILES, as_substituted, resources_of_type, user_data


def walk(node):
    """Every dict inside a template node, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def as_list(value):
    return value if isinstance(value, list) else [value]


def policy_statements(resource):
    """The statements of a role's inline policies or of a policy resource (Fn::If branches included)."""
    props = resource["Properties"]
    documents = [props["PolicyDocument"]] if "PolicyDocument" in props else []
    for policy in props.get("Policies", []):
        documents.extend(node["PolicyDocument"] for node in walk(policy) if "PolicyDocument" in node)
    statements = [s for d in documents for s in as_list(d["Statement"])]
    # A statement under Fn::If counts in either branch.
    return [branch for s in statements
            for branch in (s["Fn::If"][1:] if "Fn::If" in s else [s])
            if branch != {"Ref": "AWS::NoValue"}]


def launch_template_data(proxy):
    (template,) = resources_of_type(proxy, "AWS::EC2::LaunchTemplate").values()
    return template["Properties"]["LaunchTemplateData"]


# --- instances -----------------------------------------------------------------------------


def test_instances_require_imdsv2_with_a_hop_limit_of_one(proxy):
    options = launch_template_data(proxy)["MetadataOptions"]
    assert options["HttpTokens"] == "required"
    assert options["HttpPutResponseHopLimit"] == 1


def test_instance_volumes_are_encrypted_gp3(proxy):
    mappings = launch_template_data(proxy)["BlockDeviceMappings"]
    assert mappings
    for mapping in mappings:
        assert mapping["Ebs"]["Encrypted"] is True
        assert mapping["Ebs"]["VolumeType"] == "gp3"


def test_instances_boot_the_ubuntu_2404_image_from_ssm(proxy):
    assert launch_template_data(proxy)["ImageId"] == {"Ref": "UbuntuAmiId"}
    parameter = proxy["Parameters"]["UbuntuAmiId"]
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert parameter["Default"] == (
        "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
    )


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_no_key_pairs_anywhere(templates, name):
    assert not [n for n in walk(templates[name]) if "KeyName" in n]
    assert not resources_of_type(templates[name], "AWS::EC2::KeyPair")


def both_branches(rules):
    """Inline rules, with each Fn::If's two branches as rules of their own."""
    for rule in rules:
        if "Fn::If" in rule:
            yield from (branch for branch in rule["Fn::If"][1:] if branch != {"Ref": "AWS::NoValue"})
        else:
            yield rule


def security_group_rules(template):
    """(owner, direction, rule) for inline and standalone security group rules."""
    for name, group in resources_of_type(template, "AWS::EC2::SecurityGroup").items():
        for rule in both_branches(group["Properties"].get("SecurityGroupIngress", [])):
            yield name, "ingress", rule
        for rule in both_branches(group["Properties"].get("SecurityGroupEgress", [])):
            yield name, "egress", rule
    for kind, direction in (("AWS::EC2::SecurityGroupIngress", "ingress"),
                            ("AWS::EC2::SecurityGroupEgress", "egress")):
        for name, rule in resources_of_type(template, kind).items():
            yield rule["Properties"]["GroupId"]["Ref"], direction, rule["Properties"]


def covers_port(rule, port):
    if str(rule["IpProtocol"]) == "-1":
        return True
    return rule["IpProtocol"] == "tcp" and int(rule["FromPort"]) <= port <= int(rule["ToPort"])


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_no_ssh_and_no_open_ingress_anywhere(templates, name):
    for group, direction, rule in security_group_rules(templates[name]):
        if direction == "ingress":
            assert not covers_port(rule, 22), f"{group} opens SSH"
            assert rule.get("CidrIp") not in ("0.0.0.0/0",) and rule.get("CidrIpv6") != "::/0", (
                f"{group} is open to the internet"
            )
            assert str(rule["IpProtocol"]) != "-1", f"{group} allows every protocol in"


def test_instances_are_reachable_only_from_the_load_balancer_on_5000_and_5001(proxy):
    ingress = [(g, r) for g, d, r in security_group_rules(proxy) if d == "ingress" and g == "InstanceSecurityGroup"]
    assert ingress, "no ingress rule for the instances: the load balancer could not reach them"
    for _, rule in ingress:
        assert rule.get("SourceSecurityGroupId") == {"Ref": "LoadBalancerSecurityGroup"}, rule
        # The proxy's port and its health check port (test_target_group_checks_...).
        assert (rule["FromPort"], rule["ToPort"]) == (5000, 5001)
        assert "CidrIp" not in rule


def test_instance_egress_is_https_and_apt_only(proxy):
    egress = [r for g, d, r in security_group_rules(proxy) if d == "egress" and g == "InstanceSecurityGroup"]
    assert sorted((r["FromPort"], r["ToPort"]) for r in egress) == [(80, 80), (443, 443)]


def test_load_balancer_admits_only_cloudfront_or_only_the_allowed_cidr(proxy):
    assert "SecurityGroupIngress" not in proxy["Resources"]["LoadBalancerSecurityGroup"]["Properties"]
    rules = {name: r for name, r in resources_of_type(proxy, "AWS::EC2::SecurityGroupIngress").items()
             if r["Properties"]["GroupId"] == {"Ref": "LoadBalancerSecurityGroup"}}
    by_condition = {}
    for rule in rules.values():
        by_condition.setdefault(rule["Condition"], []).append(rule["Properties"])
    # Behind CloudFront: CloudFront's origin-facing servers only, the prefix list found by name.
    (via_cloudfront,) = by_condition.pop("ViaCloudFront")
    assert via_cloudfront["SourcePrefixListId"] == {"Fn::GetAtt": ["CloudFrontOriginFacing", "PrefixListId"]}
    assert not {"CidrIp", "CidrIpv6", "SourceSecurityGroupId"} & set(via_cloudfront)
    assert (via_cloudfront["FromPort"], via_cloudfront["ToPort"]) == (80, 80)
    lookup = proxy["Resources"]["CloudFrontOriginFacing"]
    assert lookup["Properties"]["PrefixListName"] == "com.amazonaws.global.cloudfront.origin-facing"
    assert lookup["Condition"] == "ViaCloudFront"
    # Otherwise: AllowedCidr on 80, and on 443 when there is a certificate (never behind CloudFront:
    # the Rules refuse a certificate there).
    assert proxy["Conditions"]["ReachedDirectly"] == {"Fn::Not": [{"Condition": "ViaCloudFront"}]}
    (http,) = by_condition.pop("ReachedDirectly")
    (https,) = by_condition.pop("HasCertificate")
    assert not by_condition
    assert [(r["CidrIp"], r["FromPort"]) for r in (http, https)] == [({"Ref": "AllowedCidr"}, 80), ({"Ref": "AllowedCidr"}, 443)]


LOOPBACK_PLACEHOLDER = {"IpProtocol": "-1", "CidrIp": "127.0.0.1/32"}


def test_load_balancer_egress_is_only_the_proxy_port_on_the_instances(proxy):
    # A group with no inline egress rule keeps EC2's allow-all egress, whatever separate
    # SecurityGroupEgress resources add to it.
    inline = proxy["Resources"]["LoadBalancerSecurityGroup"]["Properties"].get("SecurityGroupEgress")
    assert inline, "no inline egress: the load balancer keeps the default allow-all egress"
    egress = [r for g, d, r in security_group_rules(proxy) if d == "egress" and g == "LoadBalancerSecurityGroup"]
    to_instances = [r for r in egress if r.get("DestinationSecurityGroupId") == {"Ref": "InstanceSecurityGroup"}]
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in to_instances] == [("tcp", 5000, 5001)]
    placeholders = [r for r in egress if r not in to_instances]
    assert [{k: str(r[k]) for k in LOOPBACK_PLACEHOLDER} for r in placeholders] == [LOOPBACK_PLACEHOLDER]
    assert not {"FromPort", "ToPort", "DestinationSecurityGroupId"} & set(placeholders[0])


# --- load balancer -------------------------------------------------------------------------


def test_load_balancer_drops_invalid_header_fields(proxy):
    (balancer,) = resources_of_type(proxy, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    attributes = {a["Key"]: a["Value"] for a in balancer["Properties"]["LoadBalancerAttributes"] if "Key" in a}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"


def test_load_balancer_outwaits_the_proxys_upstream_read_timeout(proxy):
    (balancer,) = resources_of_type(proxy, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    attributes = {a["Key"]: a["Value"] for a in balancer["Properties"]["LoadBalancerAttributes"] if "Key" in a}
    config = (ROOT / "helpers/app/mlflow_proxy/config.py").read_text()
    read_timeout = float(re.search(r'"MLFLOW_PROXY_READ_TIMEOUT_SECONDS", ([\d.]+)', config).group(1))
    assert int(attributes["idle_timeout.timeout_seconds"]) > read_timeout


def test_https_listener_uses_the_tls13_policy(proxy):
    https = [l for l in resources_of_type(proxy, "AWS::ElasticLoadBalancingV2::Listener").values()
             if l["Properties"]["Protocol"] == "HTTPS"]
    assert len(https) == 1
    assert https[0]["Properties"]["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert https[0]["Condition"] == "HasCertificate"


def test_http_redirects_to_https_when_there_is_a_certificate(proxy):
    (http,) = [l for l in resources_of_type(proxy, "AWS::ElasticLoadBalancingV2::Listener").values()
               if l["Properties"]["Protocol"] == "HTTP"]
    condition, with_certificate, _ = http["Properties"]["DefaultActions"]["Fn::If"]
    assert condition == "HasCertificate"
    (action,) = with_certificate
    assert action["Type"] == "redirect"
    assert action["RedirectConfig"]["Protocol"] == "HTTPS"


def test_target_group_checks_the_port_the_master_answers_health_on(proxy):
    """Traffic to 5000 (the unit's --bind), health checks to the port gunicorn's master answers
    (the unit's MLFLOW_PROXY_HEALTH_PORT, mlflow_proxy/master_health.py)."""
    (group,) = resources_of_type(proxy, "AWS::ElasticLoadBalancingV2::TargetGroup").values()
    unit = (ROOT / "helpers" / "mlflow-proxy.service").read_text()
    assert "--bind 0.0.0.0:5000 " in unit
    assert group["Properties"]["Port"] == 5000
    (health_port,) = re.findall(r"^Environment=MLFLOW_PROXY_HEALTH_PORT=(\d+)$", unit, re.M)
    assert group["Properties"]["HealthCheckPort"] == health_port == "5001"
    assert group["Properties"]["HealthCheckPath"] == "/health"


# --- buckets -------------------------------------------------------------------------------


def bucket_cases(templates):
    return [(name, bucket) for name in TEMPLATE_FILES
            for bucket in resources_of_type(templates[name], "AWS::S3::Bucket")]


@pytest.mark.parametrize("name", ["nested/mlflow.yaml", "nested/sagemaker-domain.yaml"])
def test_buckets_are_encrypted_private_versioned_and_tls_only(templates, name):
    template = templates[name]
    buckets = resources_of_type(template, "AWS::S3::Bucket")
    assert buckets
    policies = resources_of_type(template, "AWS::S3::BucketPolicy").values()
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True,
            "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
        }
        assert props["VersioningConfiguration"]["Status"] == "Enabled"
        (policy,) = [p for p in policies if p["Properties"]["Bucket"] == {"Ref": logical_id}]
        tls_only = [
            s for s in policy["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert tls_only, f"{logical_id} accepts plain HTTP"
        resources = tls_only[0]["Resource"]
        assert {"Fn::GetAtt": [logical_id, "Arn"]} in resources  # the bucket ...
        assert {"Fn::Sub": f"${{{logical_id}.Arn}}/*"} in resources  # ... and its objects


def test_artifact_bucket_lifecycle(mlflow):
    rules = mlflow["Resources"]["ArtifactBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    plain = [r for r in rules if "Id" in r]
    assert any("AbortIncompleteMultipartUpload" in r for r in plain)
    assert any("NoncurrentVersionExpiration" in r for r in plain)
    (optional,) = [r for r in rules if "Fn::If" in r]
    assert optional["Fn::If"][0] == "HasArtifactExpiry"


# --- IAM -----------------------------------------------------------------------------------


def test_mlflow_access_role_is_scoped_to_the_one_mlflow_arn_and_the_artifact_bucket(proxy):
    role = proxy["Resources"]["MlflowAccessRole"]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Fn::GetAtt": ["InstanceRole", "Arn"]}}
    statements = policy_statements(role)
    s3 = [st for st in statements if "s3:" in str(st["Action"])]
    sagemaker = [st for st in statements if st not in s3]
    assert s3 and sagemaker
    for statement in sagemaker:
        assert statement["Resource"] == {"Ref": "MlflowArn"}
    condition, serverless, tracking = sagemaker[0]["Action"]["Fn::If"]
    assert condition == "IsServerless"
    assert sorted(serverless) == ["sagemaker-mlflow:*", "sagemaker:CallMlflowAppApi"]
    assert tracking == ["sagemaker-mlflow:*"]
    # The artifact API: the one bucket and its objects, no other bucket, no wildcard action.
    for statement in s3:
        resource = statement["Resource"]["Fn::Sub"]
        assert resource in (
            "arn:${AWS::Partition}:s3:::${ArtifactBucketName}",
            "arn:${AWS::Partition}:s3:::${ArtifactBucketName}/*",
        )
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all(action.startswith("s3:") and "*" not in action for action in actions)


def test_domain_execution_role_gets_the_artifact_bucket_and_only_it(root, mlflow, domain):
    # Studio users log artifacts straight to S3 as the domain's execution role.
    grant = mlflow["Resources"]["DomainUsersArtifactAccess"]
    assert grant["Type"] == "AWS::IAM::RolePolicy"
    assert grant["Condition"] == "HasDomainExecutionRole"
    assert grant["Properties"]["RoleName"] == {"Ref": "DomainExecutionRoleName"}
    granted = {a: s["Resource"] for s in policy_statements(grant) for a in as_list(s["Action"])}
    assert granted == {
        "s3:ListBucket": {"Fn::GetAtt": ["ArtifactBucket", "Arn"]},
        "s3:GetObject": {"Fn::Sub": "${ArtifactBucket.Arn}/*"},
        "s3:PutObject": {"Fn::Sub": "${ArtifactBucket.Arn}/*"},
        "s3:DeleteObject": {"Fn::Sub": "${ArtifactBucket.Arn}/*"},
        "s3:AbortMultipartUpload": {"Fn::Sub": "${ArtifactBucket.Arn}/*"},
    }
    # The root passes the role of the domain it created, and nothing for an existing domain.
    passed = root["Resources"]["Mlflow"]["Properties"]["Parameters"]["DomainExecutionRoleName"]
    assert passed == {"Fn::If": ["CreateDomain", {"Fn::GetAtt": ["Domain", "Outputs.ExecutionRoleName"]}, ""]}
    assert domain["Outputs"]["ExecutionRoleName"]["Value"] == {"Ref": "ExecutionRole"}
    assert mlflow["Conditions"]["HasDomainExecutionRole"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "DomainExecutionRoleName"}, ""]}]}


def test_mlflow_app_function_may_change_only_its_own_stacks_apps(mlflow):
    from mlflow_app_resource.mlflow_apps import Owner

    statements = policy_statements(mlflow["Resources"]["MlflowAppFunctionRole"])
    on_apps = [s for s in statements if "mlflow-app/*" in str(s["Resource"])]
    this_stack = {"StringEquals": {f"aws:ResourceTag/{Owner.STACK_ID_TAG}": {"Ref": "AWS::StackId"}}}
    tagged_on_create = {"StringEquals": {f"aws:RequestTag/{Owner.STACK_ID_TAG}": {"Ref": "AWS::StackId"}}}
    # Tag-on-create: AddTags only as part of CreateMlflowApp, and only with this stack's tag
    # (sagemaker:TaggingAction, docs/security-iam.md).
    within_create = {"StringEquals": {"sagemaker:TaggingAction": "CreateMlflowApp",
                                      **tagged_on_create["StringEquals"]}}
    for statement in on_apps:
        actions = set(as_list(statement["Action"]))
        if actions & {"sagemaker:UpdateMlflowApp", "sagemaker:DeleteMlflowApp", "sagemaker:DeleteTags"}:
            assert statement.get("Condition") == this_stack, statement
        elif "sagemaker:CreateMlflowApp" in actions:
            # AddTags beside it, under the request-tag condition alone, could stamp this stack's
            # tag on any existing app, which the statement above would then let it change.
            assert actions == {"sagemaker:CreateMlflowApp"}, statement
            assert statement.get("Condition") == tagged_on_create, statement
        elif "sagemaker:AddTags" in actions:
            assert statement.get("Condition") in (this_stack, within_create), statement
        else:
            assert actions <= {"sagemaker:DescribeMlflowApp", "sagemaker:ListTags"}, statement
    # AddTags without a condition would let the function tag any app as its own.
    unconditioned = {a for s in on_apps if "Condition" not in s for a in as_list(s["Action"])}
    assert unconditioned == {"sagemaker:DescribeMlflowApp", "sagemaker:ListTags"}
    granted = {a for s in on_apps for a in as_list(s["Action"])}
    assert {"sagemaker:CreateMlflowApp", "sagemaker:UpdateMlflowApp", "sagemaker:DeleteMlflowApp",
            "sagemaker:AddTags", "sagemaker:DeleteTags"} <= granted


# The IAM action of each S3 call the proxy makes (Service Authorization Reference for Amazon S3:
# the multipart calls are s3:PutObject, list_objects_v2 is s3:ListBucket, delete_objects is
# s3:DeleteObject per key).
S3_ACTION_OF_CALL = {
    "get_object": "s3:GetObject",
    "head_object": "s3:GetObject",  # HeadObject is authorized as s3:GetObject
    "put_object": "s3:PutObject",
    "create_multipart_upload": "s3:PutObject",
    "upload_part": "s3:PutObject",
    "complete_multipart_upload": "s3:PutObject",
    "abort_multipart_upload": "s3:AbortMultipartUpload",
    "list_objects_v2": "s3:ListBucket",
    "delete_objects": "s3:DeleteObject",
}


def test_proxy_role_has_exactly_the_s3_actions_the_proxy_calls(proxy):
    source = "\n".join(p.read_text() for p in (ROOT / "helpers/app/mlflow_proxy").glob("*.py"))
    calls = set(re.findall(r"\b_s3\.(\w+)\(", source)) - {"get_paginator", "generate_presigned_url"}
    calls |= set(re.findall(r'\bget_paginator\(\s*"(\w+)"', source))
    calls |= set(re.findall(r'\bgenerate_presigned_url\(\s*"(\w+)"', source))
    assert {"get_object", "put_object", "list_objects_v2"} <= calls, "the search for S3 calls broke"
    assert calls <= S3_ACTION_OF_CALL.keys(), f"add {calls - S3_ACTION_OF_CALL.keys()} to the table"
    needed = {S3_ACTION_OF_CALL[call] for call in calls}
    role = proxy["Resources"]["MlflowAccessRole"]
    granted = {a for s in policy_statements(role) for a in as_list(s["Action"]) if str(a).startswith("s3:")}
    assert granted == needed


# Lambda and EC2 assume these roles for this account's own functions and instances; the
# services that act on a request (SageMaker, VPC Flow Logs) get the confused-deputy condition.
NO_SOURCE_ACCOUNT_NEEDED = {"lambda.amazonaws.com", "ec2.amazonaws.com"}
# AWS's MLflow set-up guide gives this trust no condition; one on a key the service might not
# send would fail closed at CreateMlflowApp (docs/before-first-deploy.md#the-mlflow-service-role).
SOURCE_ACCOUNT_UNDOCUMENTED = {"MlflowServiceRole"}


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_service_roles_are_assumed_only_for_this_account(templates, name):
    for logical_id, role in resources_of_type(templates[name], "AWS::IAM::Role").items():
        for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
            services = set(as_list(statement["Principal"].get("Service", [])))
            if services - NO_SOURCE_ACCOUNT_NEEDED and logical_id not in SOURCE_ACCOUNT_UNDOCUMENTED:
                assert statement.get("Condition") == {
                    "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
                }, f"{name}: {logical_id} may be assumed by {services} for another account"


def test_instance_role_holds_only_what_the_instance_does(proxy):
    statements = policy_statements(proxy["Resources"]["InstanceRole"])
    statements += policy_statements(proxy["Resources"]["InstanceMayAssumeMlflowAccessRole"])
    granted = {action: s["Resource"] for s in statements for action in as_list(s["Action"])}
    assert granted == {
        "secretsmanager:GetSecretValue": {"Ref": "TokenSecret"},
        "logs:CreateLogStream": {"Fn::GetAtt": ["ProxyLogGroup", "Arn"]},
        "logs:PutLogEvents": {"Fn::GetAtt": ["ProxyLogGroup", "Arn"]},
        "logs:DescribeLogStreams": {"Fn::GetAtt": ["ProxyLogGroup", "Arn"]},
        "lambda:GetLayerVersion": {"Ref": "ProxyBundle"},
        "cloudformation:SignalResource": {"Ref": "AWS::StackId"},
        "elasticloadbalancing:DescribeTargetHealth": "*",
        "sts:AssumeRole": [{"Fn::GetAtt": ["MlflowAccessRole", "Arn"]},
                           {"Fn::GetAtt": ["MlflowReadOnlyRole", "Arn"]}],
    }
    managed = proxy["Resources"]["InstanceRole"]["Properties"]["ManagedPolicyArns"]
    assert managed == [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"}]


# Actions AWS does not scope to a resource; a comment beside each statement says so.
UNSCOPABLE = {  # actions IAM defines no resource type for (the service authorization reference)
    "ec2:DescribeManagedPrefixLists",
    "elasticloadbalancing:DescribeTargetHealth",
    "sagemaker:ListApps",
    "sagemaker:ListMlflowApps",
    "sagemaker:ListMlflowTrackingServers",
    "sagemaker:ListSpaces",
}


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_wildcard_resources_only_for_unscopable_actions(templates, name):
    roles = {**resources_of_type(templates[name], "AWS::IAM::Role"),
             **resources_of_type(templates[name], "AWS::IAM::RolePolicy")}
    for logical_id, role in roles.items():
        for statement in policy_statements(role):
            if statement["Effect"] == "Allow" and "*" in as_list(statement["Resource"]):
                extra = set(as_list(statement["Action"])) - UNSCOPABLE
                assert not extra, f"{logical_id} grants {extra} on every resource"


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_no_full_access_managed_policies(templates, name):
    for node in walk(templates[name]):
        for arn in as_list(node.get("ManagedPolicyArns", [])):
            assert "FullAccess" not in str(arn) and "AdministratorAccess" not in str(arn)


def test_domain_execution_role_is_not_sagemaker_full_access(domain):
    role = domain["Resources"]["ExecutionRole"]
    assert "ManagedPolicyArns" not in role["Properties"]
    actions = {a for s in policy_statements(role) for a in as_list(s["Action"])}
    assert not {a for a in actions if a.endswith(":*") and a != "sagemaker-mlflow:*"}


# --- tokens, boot, rolling updates ---------------------------------------------------------


def test_token_secret_is_generated_in_the_documented_shape(proxy):
    generated = proxy["Resources"]["TokenSecret"]["Properties"]["GenerateSecretString"]
    assert generated == {
        "SecretStringTemplate": '{"name":"admin","access":"read-write"}',
        "GenerateStringKey": "token",
        "ExcludePunctuation": True,
        "PasswordLength": 40,
    }


def test_user_data_writes_the_proxy_environment_contract(proxy):
    script = user_data(proxy)
    env_file = script.split("cat > /etc/mlflow-proxy/proxy.env <<'PROXY_ENV'\n")[1].split("PROXY_ENV\n")[0]
    names = {line.split("=")[0] for line in env_file.splitlines() if line}
    assert names == {
        "SM_MLFLOW_RESOURCE_ARN", "SM_MLFLOW_AWS_REGION", "SM_MLFLOW_ROLE_ARN",
        "SM_MLFLOW_READ_ONLY_ROLE_ARN", "MLFLOW_PROXY_TOKENS_SECRET_ARN", "MLFLOW_PROXY_LOG_GROUP", "MLFLOW_PROXY_ARTIFACT_STORE_URI",
    }
    assert "MLFLOW_PROXY_AUTH" not in script  # never an open proxy


def test_user_data_fetches_the_bundle_and_runs_its_bootstrap(proxy):
    script = user_data(proxy)
    assert "DPkg::Lock::Timeout=600" in script
    assert 'get_layer_version_by_arn(Arn="${ProxyBundle}")' in script
    assert "bash /opt/mlflow-proxy/bootstrap.sh" in script
    assert script.index("bootstrap.sh\n") < script.index("signal_cloudformation SUCCESS")


def test_user_data_signals_the_group_that_waits_for_it(proxy):
    script = user_data(proxy)
    (signalled,) = set(re.findall(r"LogicalResourceId=(\w+)", script))
    group = proxy["Resources"][signalled]
    assert group["Type"] == "AWS::AutoScaling::AutoScalingGroup"
    assert group["CreationPolicy"]["ResourceSignal"]["Count"] == {"Ref": "DesiredInstances"}
    rolling = group["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["WaitOnResourceSignals"] is True
    assert rolling["MinInstancesInService"] == {"Ref": "MinInstances"}
    assert "trap 'signal_cloudformation FAILURE' ERR" in script
    # The group waits as long on creation as on a rolling update, and long enough for the
    # worst boot: every dpkg lock wait (user data and bootstrap.sh) plus the health wait.
    timeout = group["CreationPolicy"]["ResourceSignal"]["Timeout"]
    assert rolling["PauseTime"] == timeout
    bootstrap = (ROOT / "helpers/bootstrap.sh").read_text()
    lock_waits = [int(s) for s in re.findall(r"DPkg::Lock::Timeout=(\d+)", script + bootstrap)]
    health_wait = int(re.search(r"HEALTH_TIMEOUT_SECONDS:-(\d+)", bootstrap).group(1))
    attempts, pause = re.search(r"for \w+ in \$\(seq (\d+)\); do\n(?:.*\n)*?\s*sleep (\d+)", script).groups()
    target_health_wait = int(attempts) * int(pause)
    assert len(lock_waits) >= 3
    minutes = int(re.fullmatch(r"PT(\d+)M", timeout).group(1))
    assert minutes * 60 >= sum(lock_waits) + health_wait + target_health_wait + 5 * 60, \
        "no room left for downloads and start-up"


def test_fleet_scales_on_requests_per_target_in_private_subnets(proxy):
    (policy,) = resources_of_type(proxy, "AWS::AutoScaling::ScalingPolicy").values()
    tracking = policy["Properties"]["TargetTrackingConfiguration"]
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    group = proxy["Resources"]["ProxyFleet"]["Properties"]
    assert group["VPCZoneIdentifier"] == {"Fn::Split": [",", {"Ref": "PrivateSubnetIds"}]}
    assert group["LaunchTemplate"]["Version"] == {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]}


def test_domain_is_vpc_only_with_iam_auth_and_no_home_efs(domain):
    props = domain["Resources"]["Domain"]["Properties"]
    assert props["AppNetworkAccessType"] == "VpcOnly"
    assert props["AuthMode"] == "IAM"
    # Without a home EFS SageMaker leaves no file system or NFS groups in the VPC, so nothing
    # needs cleaning up after the domain (docs/before-first-deploy.md#the-domain-has-no-home-efs).
    assert props["HomeEfsFileSystemCreation"] == "Disabled"
    assert props["DefaultUserSettings"]["AutoMountHomeEFS"] == "Disabled"
    assert not [r for r in domain["Resources"].values() if r["Type"].startswith("Custom::")]


def test_studio_use_is_scoped_to_this_domain(domain):
    statements = policy_statements(domain["Resources"]["StudioUse"])
    assert domain["Resources"]["StudioUse"]["Properties"]["RoleName"] == {"Ref": "ExecutionRole"}
    actions = {a for s in statements for a in as_list(s["Action"])}
    # What opening Studio and starting a JupyterLab or Code Editor space calls as the role.
    assert {"sagemaker:CreateSpace", "sagemaker:CreateApp", "sagemaker:DescribeApp",
            "sagemaker:DescribeDomain", "sagemaker:DescribeUserProfile", "sagemaker:ListSpaces",
            "sagemaker:ListApps"} <= actions
    for statement in statements:
        if statement["Resource"] == "*":
            assert all(a.split(":")[1].startswith("List") for a in as_list(statement["Action"])), statement
        else:
            assert "Domain.DomainId" in str(statement["Resource"]) or statement["Resource"] == {
                "Fn::GetAtt": ["Domain", "DomainArn"]} or "DomainArn" in str(statement["Resource"]), statement


def test_vpc_has_flow_logs_with_retention(networking):
    (flow_log,) = resources_of_type(networking, "AWS::EC2::FlowLog").values()
    assert flow_log["Properties"]["ResourceId"] == {"Ref": "Vpc"}
    assert flow_log["Properties"]["TrafficType"] == "ALL"
    group = networking["Resources"][flow_log["Properties"]["LogGroupName"]["Ref"]]
    assert "RetentionInDays" in group["Properties"]


def test_every_log_group_has_a_retention(templates):
    for name in TEMPLATE_FILES:
        for logical_id, group in resources_of_type(templates[name], "AWS::Logs::LogGroup").items():
            assert "RetentionInDays" in group["Properties"], f"{name}: {logical_id} keeps logs forever"


def test_user_data_is_valid_bash(proxy, tmp_path):
    # CloudFormation substitutes ${Name} and turns ${!x} into the shell's ${x}; any other ${...}
    # (a shell expansion left unescaped) would fail the stack or be taken by Fn::Sub.
    unescaped = re.sub(r"\$\{(?:!|[\w:.]+\})", "", user_data(proxy))
    assert "${" not in unescaped, "an unescaped shell ${...} would be taken by Fn::Sub"
    (tmp_path / "user-data.sh").write_text(as_substituted(user_data(proxy)))
    result = subprocess.run(["bash", "-n", str(tmp_path / "user-data.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- the access path -----------------------------------------------------------------------


def distribution(proxy):
    (dist,) = resources_of_type(proxy, "AWS::CloudFront::Distribution").values()
    assert dist["Condition"] == "ViaCloudFront"
    return dist["Properties"]["DistributionConfig"]


def test_cloudfront_is_the_default_access_path(root, proxy):
    assert root["Parameters"]["PublicAccess"]["Default"] == "cloudfront"
    assert root["Resources"]["Proxy"]["Properties"]["Parameters"]["PublicAccess"] == {"Ref": "PublicAccess"}
    assert proxy["Conditions"]["ViaCloudFront"] == {"Fn::Equals": [{"Ref": "PublicAccess"}, "cloudfront"]}


def test_behind_cloudfront_no_listener_faces_the_internet(proxy):
    # Only PublicAccess=alb makes the load balancer internet-facing (and puts it in public subnets).
    assert proxy["Conditions"]["IsInternetFacing"] == {"Fn::Equals": [{"Ref": "PublicAccess"}, "alb"]}
    (balancer,) = resources_of_type(proxy, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    assert balancer["Properties"]["Scheme"] == {"Fn::If": ["IsInternetFacing", "internet-facing", "internal"]}
    subnets = balancer["Properties"]["Subnets"]["Fn::Split"][1]
    assert subnets == {"Fn::If": ["IsInternetFacing", {"Ref": "PublicSubnetIds"}, {"Ref": "PrivateSubnetIds"}]}
    (origin,) = resources_of_type(proxy, "AWS::CloudFront::VpcOrigin").values()
    config = origin["Properties"]["VpcOriginEndpointConfig"]
    assert config["Arn"] == {"Ref": "LoadBalancer"}
    assert (config["OriginProtocolPolicy"], config["HTTPPort"]) == ("http-only", 80)


def test_viewers_reach_cloudfront_over_https_only(proxy):
    behavior = distribution(proxy)["DefaultCacheBehavior"]
    # Not redirect-to-https: the token would already have crossed in clear text.
    assert behavior["ViewerProtocolPolicy"] == "https-only"
    assert distribution(proxy)["ViewerCertificate"] == {"CloudFrontDefaultCertificate": True}


MANAGED_CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
MANAGED_ALL_VIEWER = "216adef6-5c7f-47e4-b989-5492eafa07d3"


def test_cloudfront_caches_nothing_and_forwards_every_method_header_and_query(proxy):
    config = distribution(proxy)
    behavior = config["DefaultCacheBehavior"]
    assert set(behavior["AllowedMethods"]) == {"GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"}
    assert behavior["CachePolicyId"] == MANAGED_CACHING_DISABLED
    # AllViewer carries Authorization (the token), Host and every query string to the proxy.
    assert behavior["OriginRequestPolicyId"] == MANAGED_ALL_VIEWER
    assert "ForwardedValues" not in behavior and "CacheBehaviors" not in config
    (origin,) = config["Origins"]
    assert origin["VpcOriginConfig"]["VpcOriginId"] == {"Fn::GetAtt": ["VpcOrigin", "Id"]}
    assert origin["DomainName"] == {"Fn::GetAtt": ["LoadBalancer", "DNSName"]}
    assert behavior["TargetOriginId"] == origin["Id"]
    # The most CloudFront allows without a quota increase; documented in before-first-deploy.md.
    assert origin["VpcOriginConfig"]["OriginReadTimeout"] == 120
    assert "ResponseCompletionTimeout" not in origin  # long downloads are not cut


def test_the_proxy_sees_the_viewer_address_behind_cloudfront(proxy):
    # CloudFront appends the viewer's address to X-Forwarded-For; the ALB keeps the header as it
    # came, so the one entry the proxy trusts (ProxyFix x_for=1) is the viewer's.
    (balancer,) = resources_of_type(proxy, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    attributes = {a["Key"]: a["Value"] for a in balancer["Properties"]["LoadBalancerAttributes"] if "Key" in a}
    assert attributes["routing.http.xff_header_processing.mode"] == {"Fn::If": ["ViaCloudFront", "preserve", "append"]}
    app = (ROOT / "helpers/app/mlflow_proxy/__init__.py").read_text()
    assert "ProxyFix(app.wsgi_app, x_for=1)" in app


def test_proxy_url_is_the_distributions_https_url_behind_cloudfront(root, proxy):
    url = proxy["Outputs"]["ProxyUrl"]["Value"]["Fn::If"]
    assert url[0] == "ViaCloudFront"
    assert url[1] == {"Fn::Sub": "https://${Distribution.DomainName}"}
    assert root["Outputs"]["ProxyUrl"]["Value"] == {"Fn::GetAtt": ["Proxy", "Outputs.ProxyUrl"]}
