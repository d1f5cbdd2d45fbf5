"""The instances' user data, run for real by bash with the AWS-facing commands replaced by stubs:
what it asks AWS and signals to CloudFormation, and how it exits, when apt, the bootstrap, the
load balancer's health check or the signal fails.

The stubs behave as the instance does: python3 is Ubuntu's own, without boto3 until apt installs
python3-boto3; curl answers IMDSv2 and the AWS Query API calls signed with --aws-sigv4."""

import json
import re
import subprocess
import sys

import pytest

from template_support import as_substituted, user_data

INSTANCE_ID = "i-0123456789abcdef0"
SECRET_ACCESS_KEY = "instance-role-secret"

# curl: IMDSv2, the signed AWS calls (recorded, one JSON object per line), the bundle download.
CURL = rf'''#!{sys.executable} -S
import json, os, sys
args = sys.argv[1:]
url = next(a for a in args if a.startswith("http"))
if "{SECRET_ACCESS_KEY}" in " ".join(args):
    sys.exit("the secret key is in curl's arguments, where any local user can read it")
if "-o" in args:
    target = args[args.index("-o") + 1]
    os.makedirs(os.path.dirname(target), exist_ok=True)
    open(target, "w").close()
elif url.endswith("/api/token"):
    print("imds-token")
elif url.endswith("/meta-data/instance-id"):
    print("{INSTANCE_ID}")
elif url.endswith("/security-credentials/"):
    print("proxy-instance-role")
elif url.endswith("/security-credentials/proxy-instance-role"):
    print(json.dumps({{"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "{SECRET_ACCESS_KEY}",
                      "Token": "session-token"}}))
elif "--aws-sigv4" in args:
    config = sys.stdin.read()
    assert 'user = "ASIAEXAMPLE:{SECRET_ACCESS_KEY}"' in config, config
    assert 'header = "X-Amz-Security-Token: session-token"' in config, config
    form = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--data-urlencode")
    form["service"] = args[args.index("--aws-sigv4") + 1].split(":")[-1]
    with open(os.environ["CALLS"], "a") as calls:
        calls.write(json.dumps(form) + "\n")
    if form["Action"] == "SignalResource":
        sys.exit(int(os.environ["SIGNAL_EXIT"]))
    if form["Action"] == "DescribeTargetHealth":
        states = os.environ["TARGET_STATES"].split(",")
        asked = sum(1 for line in open(os.environ["CALLS"]) if "DescribeTargetHealth" in line)
        state = states[min(asked, len(states)) - 1]
        print(f"<DescribeTargetHealthResponse><TargetHealthDescriptions><member><TargetHealth>"
              f"<State>{{state}}</State></TargetHealth></member></TargetHealthDescriptions>"
              f"</DescribeTargetHealthResponse>")
'''

STUBS = {
    "curl": CURL,
    "apt-get": '#!/bin/bash\n[ "$APT_EXIT" = 0 ] && touch "$APT_INSTALLED"\nexit "$APT_EXIT"\n',
    # Ubuntu's python3 (the real one here), which has no boto3 until apt has installed it; with
    # boto3, the layer's download URL.
    "python3": '#!/bin/bash\n'
               'case "$2" in\n'
               '  *boto3*) [ -e "$APT_INSTALLED" ] || { echo "No module named boto3" >&2; exit 1; }\n'
               '           echo https://bundle.example/layer.zip;;\n'
               '  *) exec /usr/bin/python3 "$@";;\n'
               'esac\n',
    # The "bundle": a bootstrap.sh that exits as the test says.
    "unzip": '#!/bin/bash\nmkdir -p "${@: -1}"; echo "exit $BOOTSTRAP_EXIT" > "${@: -1}/bootstrap.sh"\n',
    "sleep": "#!/bin/bash\n",
}


@pytest.fixture
def run_user_data(proxy, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    script = as_substituted(user_data(proxy))
    for path in ("/etc/mlflow-proxy", "/opt/mlflow-proxy", "/tmp/mlflow-proxy.zip"):
        script = script.replace(path, f"{tmp_path}{path}")
    (tmp_path / "user-data.sh").write_text(script)
    calls = tmp_path / "calls"

    def run(bootstrap_exit=0, signal_exit=0, apt_exit=0, target_states="healthy"):
        calls.write_text("")
        (tmp_path / "apt-installed").unlink(missing_ok=True)
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls),
               "APT_EXIT": str(apt_exit), "APT_INSTALLED": str(tmp_path / "apt-installed"),
               "BOOTSTRAP_EXIT": str(bootstrap_exit), "SIGNAL_EXIT": str(signal_exit),
               "TARGET_STATES": target_states}
        result = subprocess.run(["bash", str(tmp_path / "user-data.sh")], env=env,
                                capture_output=True, text=True, timeout=60)
        return result.returncode, [json.loads(line) for line in calls.read_text().splitlines()]

    return run


def signals(calls):
    return [call["Status"] for call in calls if call["Action"] == "SignalResource"]


def test_a_healthy_instance_signals_success_once_the_target_group_counts_it_healthy(run_user_data):
    status, calls = run_user_data(target_states="initial,initial,healthy")
    assert status == 0
    assert [call["Action"] for call in calls] == ["DescribeTargetHealth"] * 3 + ["SignalResource"]
    assert calls[0] == {"service": "elasticloadbalancing", "Action": "DescribeTargetHealth",
                        "Version": "2015-12-01", "TargetGroupArn": "placeholder",
                        "Targets.member.1.Id": INSTANCE_ID, "Targets.member.1.Port": "5000"}
    assert calls[-1] == {"service": "cloudformation", "Action": "SignalResource", "Version": "2010-05-15",
                         "StackName": "placeholder", "LogicalResourceId": "ProxyFleet",
                         "UniqueId": INSTANCE_ID, "Status": "SUCCESS"}


def test_an_instance_the_target_group_never_counts_healthy_signals_failure(run_user_data):
    status, calls = run_user_data(target_states="unhealthy")
    assert status != 0
    assert signals(calls) == ["FAILURE"]
    assert len([call for call in calls if call["Action"] == "DescribeTargetHealth"]) == 30


def test_a_healthy_instance_nobody_waits_for_still_boots_cleanly(run_user_data):
    # Scale-out or replacement outside a stack operation: SignalResource fails. That is not a
    # failed boot, so no FAILURE follows and cloud-init sees success.
    status, calls = run_user_data(signal_exit=1)
    assert (status, signals(calls)) == (0, ["SUCCESS"])


def test_a_failed_bootstrap_signals_failure_and_fails_the_boot(run_user_data):
    status, calls = run_user_data(bootstrap_exit=3)
    assert status != 0
    assert signals(calls) == ["FAILURE"]


def test_a_failed_bootstrap_nobody_waits_for_still_fails_the_boot(run_user_data):
    status, calls = run_user_data(bootstrap_exit=3, signal_exit=1)
    assert status != 0
    assert signals(calls) == ["FAILURE"]


def test_a_boot_whose_apt_fails_still_signals_failure(run_user_data):
    # The README's own troubleshooting case: no route to the mirrors. Nothing apt would have
    # installed (python3-boto3) is there to signal with.
    status, calls = run_user_data(apt_exit=100)
    assert status != 0
    assert signals(calls) == ["FAILURE"]
