"""The wiring `sam build` and CloudFormation rely on: paths, parameters, modes, custom resources."""

import re
import tomllib

import pytest

from template_support import MODES, ROOT, TEMPLATE_FILES, resources_of_type


def test_nested_stacks_point_at_the_nested_templates(root):
    stacks = resources_of_type(root, "AWS::CloudFormation::Stack")
    urls = sorted(s["Properties"]["TemplateURL"] for s in stacks.values())
    assert urls == sorted(name for name in TEMPLATE_FILES if name.startswith("nested/"))
    for url in urls:
        assert (ROOT / url).is_file()


def code_locations(templates):
    for name in TEMPLATE_FILES:
        for logical_id, resource in templates[name]["Resources"].items():
            props = resource.get("Properties", {})
            for key in ("CodeUri", "ContentUri"):
                if key in props:
                    yield name, logical_id, resource, (ROOT / name).parent / props[key]


def test_code_and_layer_paths_resolve_from_their_template(templates):
    # sam build resolves CodeUri/ContentUri relative to the template that names them.
    locations = list(code_locations(templates))
    assert {logical_id for _, logical_id, _, _ in locations} == {
        "ProxyBundle", "Boto3Layer", "MlflowAppFunction", "OriginFacingPrefixListFunction"}
    for name, logical_id, resource, path in locations:
        assert path.is_dir(), f"{name}: {logical_id} points at {path}, which does not exist"
        if resource.get("Metadata", {}).get("BuildMethod") == "makefile":
            makefile = (path / "Makefile").read_text()
            assert re.search(rf"^build-{logical_id}:", makefile, re.M), (
                f"{path}/Makefile has no build-{logical_id} target for sam build"
            )
        if resource["Type"] == "AWS::Serverless::Function":
            module, _, function = resource["Properties"]["Handler"].partition(".")
            source = (path / f"{module}.py").read_text()
            assert re.search(rf"^{function}\b|^def {function}\(", source, re.M), (
                f"{logical_id}: {module}.py defines no {function}"
            )


def test_every_root_parameter_is_grouped_and_labelled(root):
    interface = root["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [p for group in interface["ParameterGroups"] for p in group["Parameters"]]
    assert sorted(grouped) == sorted(root["Parameters"]), "each parameter in exactly one group"
    assert set(interface["ParameterLabels"]) == set(root["Parameters"])


def test_every_output_is_described(templates):
    for name in TEMPLATE_FILES:
        for output_name, output in templates[name].get("Outputs", {}).items():
            assert output.get("Description"), f"{name}: output {output_name} has no description"


def test_mlflow_type_selects_one_of_two_resources(mlflow, root):
    assert root["Parameters"]["MlflowType"]["Default"] == "tracking"
    assert sorted(root["Parameters"]["MlflowType"]["AllowedValues"]) == sorted(MODES)
    tracking = mlflow["Resources"]["TrackingServer"]
    app = mlflow["Resources"]["MlflowApp"]
    assert tracking["Condition"] == "IsTracking"
    assert app["Condition"] == "IsServerless"
    assert mlflow["Outputs"]["MlflowArn"]["Value"] == {"Fn::If": [
        "IsTracking", {"Fn::GetAtt": ["TrackingServer", "TrackingServerArn"]}, {"Fn::GetAtt": ["MlflowApp", "Arn"]}]}
    assert app["Properties"]["DefaultDomainIdList"] == [{"Ref": "DomainId"}]
    for key in ("Name", "ArtifactStoreUri", "RoleArn", "ModelRegistrationMode", "WeeklyMaintenanceWindowStart", "Tags"):
        assert key in app["Properties"], key
    # Both take their artifacts from the stack's bucket and the service role scoped to it.
    for resource in (tracking, app):
        assert resource["Properties"]["ArtifactStoreUri"] == {"Fn::Sub": "s3://${ArtifactBucket}/"}
        assert resource["Properties"]["RoleArn"] == {"Fn::GetAtt": ["MlflowServiceRole", "Arn"]}


def crhelper_cases(templates):
    for name in TEMPLATE_FILES:
        for logical_id, resource in templates[name]["Resources"].items():
            if resource["Type"].startswith("Custom::"):
                yield name, logical_id


@pytest.mark.parametrize("name, custom_resource", [("nested/mlflow.yaml", "MlflowApp")])
def test_custom_resource_function_may_poll_itself(templates, name, custom_resource):
    """crhelper names its EventBridge rule after the resource and lets it invoke the function."""
    template = templates[name]
    assert {c for n, c in crhelper_cases(templates) if n == name} == {custom_resource}
    resource = template["Resources"][custom_resource]
    function_id = resource["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    function = template["Resources"][function_id]["Properties"]
    role_id = function["Role"]["Fn::GetAtt"][0]
    assert role_id in resource["DependsOn"], "the role must outlive the resource's Delete"
    statements = template["Resources"][role_id]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["PollWithEventBridge"]["Resource"]["Fn::Sub"].endswith(f":rule/{custom_resource}*")
    function_name = function["FunctionName"]["Fn::Sub"]
    assert by_sid["LetTheRuleInvokeThisFunction"]["Resource"]["Fn::Sub"].endswith(f":function:{function_name}")


def test_vpc_endpoints_cover_what_the_design_calls(networking):
    services = {
        r["Properties"]["ServiceName"]["Fn::Sub"]: r.get("Condition")
        for r in resources_of_type(networking, "AWS::EC2::VPCEndpoint").values()
    }
    prefix = "com.amazonaws.${AWS::Region}."
    for service in ("sts", "sagemaker.api", "ssm", "ssmmessages", "ec2messages", "logs", "secretsmanager", "lambda"):
        assert services[prefix + service] == "HasVpcEndpoints", service
    assert services["aws.sagemaker.${AWS::Region}.experiments"] == "HasExperimentsEndpoint"
    assert services[prefix + "s3"] is None  # the gateway endpoint is free: always there


def test_samconfig_deploys_each_mode_to_its_own_stack():
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    stacks = {}
    for environment, mode in (("default", "tracking"), ("serverless", "serverless")):
        deploy = config[environment]["deploy"]["parameters"]
        assert deploy["resolve_s3"] is True
        assert {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"} <= set(deploy["capabilities"].split())
        assert f"MlflowType={mode}" in deploy["parameter_overrides"]
        stacks[mode] = deploy["stack_name"]
        assert config[environment]["delete"]["parameters"]["stack_name"] == stacks[mode]
    assert stacks["tracking"] != stacks["serverless"]


def test_every_docs_anchor_the_templates_and_functions_cite_exists():
    cited = set()
    for path in [*ROOT.glob("*.yaml"), *ROOT.glob("nested/*.yaml"), *ROOT.glob("functions/*/*.py")]:
        cited |= set(re.findall(r"docs/([\w-]+\.md)#([\w-]+)", path.read_text()))
    assert cited, "no docs anchors cited: the pattern or the citations changed"
    for page, anchor in cited:
        headings = re.findall(r"^#+ (.+)$", (ROOT / "docs" / page).read_text(), re.M)
        anchors = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
        assert anchor in anchors, f"docs/{page}#{anchor} is cited but no heading makes it"


def test_the_vpc_has_public_and_private_subnets_only_in_the_chosen_zones(networking, root):
    subnets = resources_of_type(networking, "AWS::EC2::Subnet")
    assert sorted(subnets) == [f"{kind}Subnet{i}" for kind in ("Private", "Public") for i in (1, 2, 3)]
    for name, subnet in subnets.items():
        index = int(name[-1]) - 1
        assert subnet["Properties"]["AvailabilityZone"] == {"Fn::If": [
            "HasChosenAzs",
            {"Fn::Select": [index, {"Fn::Split": [",", {"Ref": "AvailabilityZones"}]}]},
            {"Fn::Select": [index, {"Fn::GetAZs": ""}]}]}, name
    assert root["Resources"]["Network"]["Properties"]["Parameters"]["AvailabilityZones"] == {"Ref": "AvailabilityZones"}
