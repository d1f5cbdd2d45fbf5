"""The instances' user data, run for real by bash with the AWS-facing commands replaced by stubs:
what it signals to CloudFormation, and how it exits, when the bootstrap or the signal fails."""

import re
import subprocess

import pytest

from template_support import resources_of_type

STUBS = {
    # IMDSv2 token and instance id; with -o, the bundle download.
    "curl": 'for a; do [ "$prev" = -o ] && : > "$a"; prev=$a; done; echo i-0123456789abcdef0',
    "apt-get": "exit 0",
    # signal_resource records the status it was given (its last argument) and fails on demand;
    # the other call prints the layer's download URL.
    "python3": 'case "$2" in *signal_resource*) echo "${@: -1}" >> "$SIGNALS"; exit "$SIGNAL_EXIT";;'
               ' *) echo https://bundle.example/layer.zip;; esac',
    # The "bundle": a bootstrap.sh that exits as the test says.
    "unzip": 'mkdir -p "${@: -1}"; echo "exit $BOOTSTRAP_EXIT" > "${@: -1}/bootstrap.sh"',
}


def user_data(proxy):
    (template,) = resources_of_type(proxy, "AWS::EC2::LaunchTemplate").values()
    sub = template["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]
    return sub if isinstance(sub, str) else sub[0]


@pytest.fixture
def run_user_data(proxy, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    script = re.sub(r"\$\{(?!!)[\w:.]+\}", "placeholder", user_data(proxy))
    for path in ("/etc/mlflow-proxy", "/opt/mlflow-proxy", "/tmp/mlflow-proxy.zip"):
        script = script.replace(path, f"{tmp_path}{path}")
    (tmp_path / "user-data.sh").write_text(script)
    signals = tmp_path / "signals"

    def run(bootstrap_exit, signal_exit):
        signals.write_text("")
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SIGNALS": str(signals),
               "BOOTSTRAP_EXIT": str(bootstrap_exit), "SIGNAL_EXIT": str(signal_exit)}
        result = subprocess.run(["bash", str(tmp_path / "user-data.sh")], env=env,
                                capture_output=True, text=True, timeout=60)
        return result.returncode, signals.read_text().split()

    return run


def test_a_healthy_instance_signals_success(run_user_data):
    assert run_user_data(bootstrap_exit=0, signal_exit=0) == (0, ["SUCCESS"])


def test_a_healthy_instance_nobody_waits_for_still_boots_cleanly(run_user_data):
    # Scale-out or replacement outside a stack operation: SignalResource fails. That is not a
    # failed boot, so no FAILURE follows and cloud-init sees success.
    assert run_user_data(bootstrap_exit=0, signal_exit=1) == (0, ["SUCCESS"])


def test_a_failed_bootstrap_signals_failure_and_fails_the_boot(run_user_data):
    status, signals = run_user_data(bootstrap_exit=3, signal_exit=0)
    assert status != 0
    assert signals == ["FAILURE"]


def test_a_failed_bootstrap_nobody_waits_for_still_fails_the_boot(run_user_data):
    status, signals = run_user_data(bootstrap_exit=3, signal_exit=1)
    assert status != 0
    assert signals == ["FAILURE"]
