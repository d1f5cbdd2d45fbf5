"""The gates CI runs on the templates: cfn-lint, sam validate --lint, checkov per mode, taskcat lint."""

import json
import re
import shutil
import subprocess

import pytest
import yaml

from template_support import (
    MODES,
    ROOT,
    TEMPLATE_FILES,
    region_resource_types,
    template_resource_types,
    tool,
    tool_env,
)


def run(command, cwd=ROOT, timeout=300):
    return subprocess.run(
        command, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout
    )


def lint_regions(templates):
    """Every aws-partition region where every resource type the templates use exists."""
    needed = template_resource_types(templates)
    return sorted(r for r, types in region_resource_types().items() if needed <= types)


def test_lint_covers_the_main_regions(templates):
    # If a type the templates use vanished from these, the lint would silently shrink.
    assert {"us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1"} <= set(lint_regions(templates))


def test_cfn_lint_passes_in_every_region_the_resources_exist_in(templates):
    result = run([tool(".venv", "cfn-lint"), "--regions", *lint_regions(templates), "--", *TEMPLATE_FILES])
    # Warnings fail too: W1101 (aliases) or W8001 (dead conditions) are real defects here.
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("template", TEMPLATE_FILES)
def test_sam_validate_lint_passes(template):
    result = run([tool(".venv-sam", "sam"), "validate", "--lint", "--template", template])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def set_mlflow_type_default(directory, mode):
    """checkov resolves conditions from parameter defaults: make `mode` every template's default."""
    changed = 0
    for name in TEMPLATE_FILES:
        path = directory / name
        text = path.read_text()
        new, count = re.subn(
            r"(\n  MlflowType:\n    Type: String\n)(    Default: \w+\n)?",
            rf"\g<1>    Default: {mode}\n",
            text,
        )
        assert count <= 1, f"{name}: MlflowType declared {count} times"
        path.write_text(new)
        changed += count
    assert changed >= 3, "MlflowType parameters not found: the mode switch below would scan nothing"


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_checkov_passes_in_each_mode(template_copy, mode):
    set_mlflow_type_default(template_copy, mode)
    result = run(
        [
            tool(".venv-checkov", "checkov"),
            "--directory", str(template_copy),
            "--config-file", str(ROOT / ".checkov.yaml"),
            "--output", "json",
        ],
        cwd=template_copy,
    )
    report = json.loads(result.stdout)
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for c in report["results"].get("failed_checks", [])
    ]
    assert not failed, "checkov failures beyond .checkov.yaml's skip list:\n" + "\n".join(failed)
    assert result.returncode == 0, result.stderr
    scanned = {c["resource"] for c in report["results"]["passed_checks"]}
    # The scan followed the mode: the MLflow App's function exists only in serverless mode.
    assert ("AWS::Serverless::Function.MlflowAppFunction" in scanned) == (mode == "serverless")


def test_every_checkov_skip_has_a_reason():
    lines = (ROOT / ".checkov.yaml").read_text().splitlines()
    skips = yaml.safe_load("\n".join(lines))["skip-check"]
    assert skips, "the skip list is empty: then drop this test's premise"
    for check in skips:
        (line,) = [l for l in lines if re.match(rf"\s*-\s*{re.escape(check)}\b", l)]
        reason = line.partition("#")[2].strip()
        assert len(reason.split()) >= 5, f"{check} is skipped without a reason"


def packaged_stand_in(directory):
    """What `sam package` writes for taskcat: the root template with S3 URLs for the children."""
    packaged = directory / ".aws-sam" / "packaged.yaml"
    packaged.parent.mkdir(parents=True)
    text = (ROOT / "template.yaml").read_text()
    text, count = re.subn(
        r"TemplateURL: nested/([\w-]+)\.yaml",
        r"TemplateURL: https://s3.us-east-1.amazonaws.com/sam-artifacts/0123456789abcdef-\1.template",
        text,
    )
    assert count == 5, "expected five nested stacks"
    packaged.write_text(text)


@pytest.mark.slow
def test_taskcat_lint_passes(tmp_path):
    config = yaml.safe_load((ROOT / ".taskcat.yml").read_text())
    assert config["project"]["template"] == ".aws-sam/packaged.yaml"
    assert {"us-east-1", "us-west-2", "eu-west-1"} <= set(config["project"]["regions"])
    assert {t["parameters"]["MlflowType"] for t in config["tests"].values()} == set(MODES)
    shutil.copy(ROOT / ".taskcat.yml", tmp_path / ".taskcat.yml")
    packaged_stand_in(tmp_path)
    result = run([tool(".venv-taskcat", "taskcat"), "lint"], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Linting passed" in output, output
