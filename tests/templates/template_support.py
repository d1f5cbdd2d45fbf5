"""What the template gates share: where the templates and tools are, and the templates loaded the
way CloudFormation reads them (cfn-lint's decoder understands !Ref, !Sub, ...).

A module of its own, not conftest.py: other test directories have a conftest module too, and
`from conftest import` would find whichever was imported first."""

import json
import os
import pathlib
import re

import boto3
import cfnlint
import pytest
from cfnlint.decode import decode

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE_FILES = ["template.yaml", *sorted(f"nested/{p.name}" for p in (ROOT / "nested").glob("*.yaml"))]
MODES = ["tracking", "serverless"]


def load(relative_path):
    template, problems = decode(str(ROOT / relative_path))
    assert not problems, f"{relative_path} does not parse: {problems}"
    return template


def resources_of_type(template, resource_type):
    return {name: r for name, r in template["Resources"].items() if r["Type"] == resource_type}


def tool(venv, name):
    path = ROOT / venv / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools`")
    return str(path)


def tool_env():
    """Offline: no telemetry, a region, dummy credentials for tools that insist on some."""
    env = dict(os.environ)
    env.update(
        SAM_CLI_TELEMETRY="0",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        BC_SKIP_DOWNLOAD="true",
    )
    env.pop("AWS_PROFILE", None)
    return env


def region_resource_types():
    """{region: set of resource types} for the aws partition, from cfn-lint's own schemas."""
    providers = pathlib.Path(cfnlint.__file__).parent / "data" / "schemas" / "providers"
    regions = boto3.session.Session().get_available_regions("sagemaker", "aws")
    return {
        region: set(json.loads((providers / f"{region}.json").read_text()))
        for region in regions
        if (providers / f"{region}.json").exists()
    }


def template_resource_types(templates):
    """The CloudFormation types the templates create (custom and SAM types excluded)."""
    return {
        r["Type"]
        for t in templates.values()
        for r in t["Resources"].values()
        if r["Type"].startswith("AWS::") and not r["Type"].startswith("AWS::Serverless::")
    }


def user_data(proxy):
    """The launch template's user data script, before Fn::Sub."""
    (template,) = resources_of_type(proxy, "AWS::EC2::LaunchTemplate").values()
    sub = template["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]
    return sub if isinstance(sub, str) else sub[0]


def as_substituted(script):
    """What Fn::Sub makes of a script: each ${Name} a template value (a placeholder here), each
    ${!literal} the shell's ${literal}."""
    script = re.sub(r"\$\{(?!!)[\w:.]+\}", "placeholder", script)
    return script.replace("${!", "${")
