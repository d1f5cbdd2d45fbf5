"""What a stack update does to the proxy fleet (docs/rollouts.md): what it replaces and what it
keeps, how long a leaving instance may finish its requests, and what it leaves of the group's size."""

import configparser
import re
import runpy

import pytest
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

from template_support import MODES, ROOT

# docs/rollouts.md: the longest request a rolling update or a scale-in lets finish.
TRANSFER_SECONDS = 300


def create_only_properties(resource_type):
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    return [pointer.removeprefix("/properties/") for pointer in schema.get("createOnlyProperties", [])]


def in_mode(value, mode):
    """A property value as CloudFormation resolves it for MlflowType=mode (only what is used here)."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return value["Fn::Sub"].replace("${MlflowType}", mode)
    if value == {"Ref": "MlflowType"}:
        return mode
    return value


@pytest.mark.parametrize("logical_id", ["MlflowAccessRole", "MlflowReadOnlyRole",
                                        "InstanceMayAssumeMlflowAccessRole"])
def test_switching_mlflow_type_replaces_what_old_instances_sign_with(proxy, logical_id):
    """An in-place change would take the old ARN's permissions (or the right to assume the role)
    from instances still running until the rolling update replaces them; a replacement is deleted
    only in the cleanup phase, after the rolling update."""
    resource = proxy["Resources"][logical_id]
    create_only = create_only_properties(resource["Type"])
    per_mode = {mode: {name: in_mode(resource["Properties"].get(name), mode) for name in create_only}
                for mode in MODES}
    assert per_mode["tracking"] != per_mode["serverless"], f"{logical_id} would be changed in place"


def test_the_mlflow_access_roles_paths_are_valid_iam_paths(proxy):
    path = proxy["Resources"]["MlflowAccessRole"]["Properties"]["Path"]
    for mode in MODES:
        assert re.fullmatch(r"/([\x21-\x7e]+/)?", in_mode(path, mode)), in_mode(path, mode)


def test_stack_updates_leave_a_scaled_out_group_at_its_size(proxy):
    fleet = proxy["Resources"]["ProxyFleet"]
    if "DesiredCapacity" in fleet["Properties"]:
        # Otherwise every update (each new Ubuntu AMI is one) sets the size back to DesiredInstances.
        assert fleet["UpdatePolicy"]["AutoScalingScheduledAction"] == {"IgnoreUnmodifiedGroupSizeProperties": True}


def test_a_leaving_instance_may_finish_requests_of_the_documented_length(proxy):
    attributes = {a["Key"]: a["Value"]
                  for a in proxy["Resources"]["ProxyTargetGroup"]["Properties"]["TargetGroupAttributes"]}
    deregistration_delay = int(attributes["deregistration_delay.timeout_seconds"])
    graceful_timeout = runpy.run_path(str(ROOT / "helpers/app/gunicorn.conf.py"))["graceful_timeout"]
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(ROOT / "helpers/mlflow-proxy.service")
    stop_timeout = int(unit["Service"]["TimeoutStopSec"])

    assert deregistration_delay == TRANSFER_SECONDS  # the load balancer drains a leaving instance
    assert graceful_timeout == TRANSFER_SECONDS  # gunicorn lets a stopping worker finish
    assert stop_timeout > graceful_timeout  # ...before systemd kills it
    assert f"{TRANSFER_SECONDS} s" in (ROOT / "docs/rollouts.md").read_text()


def test_a_new_instance_counts_healthy_well_within_its_boots_wait_for_it(proxy):
    group = proxy["Resources"]["ProxyTargetGroup"]["Properties"]
    needed = group["HealthCheckIntervalSeconds"] * group["HealthyThresholdCount"]
    attempts, pause = re.search(r"for \w+ in \$\(seq (\d+)\); do\n(?:.*\n)*?\s*sleep (\d+)",
                                proxy["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
                                ["UserData"]["Fn::Base64"]["Fn::Sub"]).groups()
    assert int(attempts) * int(pause) >= 5 * needed


def test_instances_boot_only_after_the_listener_that_forwards_to_their_target_group(proxy):
    """An instance waits for its target to be healthy before it signals; with a certificate only
    HttpsListener forwards, so the fleet must wait for it too, not only for HttpListener."""
    resources = proxy["Resources"]
    depends_on = resources["ProxyFleet"]["DependsOn"]
    forwarding = {"HttpListener"} if "HttpListener" in depends_on else set()
    for name in depends_on:
        metadata = resources[name].get("Metadata", {})
        forwarding |= {ref["Ref"] for value in metadata.values() if "Fn::If" in value
                       for ref in value["Fn::If"][1:] if isinstance(ref, dict) and "Ref" in ref}
    assert {"HttpListener", "HttpsListener"} <= forwarding
