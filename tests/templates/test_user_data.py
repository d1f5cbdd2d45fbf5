"""The instances' user data, run for real by bash with the AWS-facing commands replaced by stubs:
what it asks AWS and signals to CloudFormation, and how it exits, when apt, the bootstrap, the
load balancer's health check or the signal fails.

The stubs behave as the instance does: python3 is Ubuntu's own, without boto3 until apt installs
python3-boto3; curl answers IMDSv2 and the AWS Query API calls signed with --aws-sigv4."""

import datetime
import hashlib
import json
import shutil
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from local.sigv4_verifier import WireRequest, verify
from template_support import as_substituted, user_data
from tests.unit.mlflow_app_resource.cloudformation_fakes import write_self_signed_certificate

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


def test_user_data_passes_shellcheck(proxy, tmp_path):
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (Debian package shellcheck)")
    (tmp_path / "user-data.sh").write_text(as_substituted(user_data(proxy)))
    result = subprocess.run([shellcheck, "--severity=style", str(tmp_path / "user-data.sh")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


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


def test_the_signal_is_signed_as_aws_checks_it(proxy, tmp_path):
    """The user data's aws_query, run with the real curl against a loopback TLS server, sends a
    SignalResource that local/sigv4_verifier.py (SigV4 as AWS documents it) accepts. curl here may
    be older than Ubuntu 24.04's 8.5.0; both have --aws-sigv4 (7.75.0 and later)."""
    cert_path, key_path = write_self_signed_certificate(tmp_path)
    received = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            path, _, query = self.path.partition("?")
            received["request"] = WireRequest(self.command, path, query,
                                              {k.lower(): v for k, v in self.headers.items()},
                                              hashlib.sha256(body).hexdigest())
            received["form"] = dict(parse_qsl(body.decode()))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "imds-curl").write_text(CURL)
    # Signed calls go to the loopback server (the Host header, which is signed, stays AWS's); its
    # certificate names 127.0.0.1, not AWS's host, hence --insecure, here only.
    (bin_dir / "curl").write_text(
        '#!/bin/bash\ncase "$*" in\n'
        f'  *--aws-sigv4*) exec /usr/bin/curl --insecure '
        f'--connect-to "::127.0.0.1:{server.server_address[1]}" "$@";;\n'
        f'  *) exec {bin_dir}/imds-curl "$@";;\nesac\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    script = user_data(proxy).replace("${AWS::Region}", "us-east-1").replace("${AWS::URLSuffix}", "amazonaws.com")
    functions = as_substituted(script[script.index("imds() {"):script.index("signal_cloudformation() {")])
    (tmp_path / "signal.sh").write_text(
        "set -euo pipefail\n" + functions +
        "aws_query cloudformation SignalResource 2010-05-15 StackName=mlflow-proxy-Proxy-1A2B "
        "LogicalResourceId=ProxyFleet UniqueId=i-0123456789abcdef0 Status=SUCCESS\n")
    try:
        result = subprocess.run(["bash", str(tmp_path / "signal.sh")], capture_output=True, text=True, timeout=60,
                                env={"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls")})
        thread.join(timeout=10)
    finally:
        server.server_close()
    assert result.returncode == 0, result.stderr

    request = received["request"]
    assert request.headers["host"] == "cloudformation.us-east-1.amazonaws.com"
    authorization = verify(request, service="cloudformation", regions={"us-east-1"},
                           find_secret=lambda key, token: SECRET_ACCESS_KEY if token == "session-token" else None,
                           now=datetime.datetime.now(datetime.timezone.utc))
    assert "x-amz-security-token" in authorization.signed_headers
    assert received["form"] == {"Action": "SignalResource", "Version": "2010-05-15",
                                "StackName": "mlflow-proxy-Proxy-1A2B", "LogicalResourceId": "ProxyFleet",
                                "UniqueId": "i-0123456789abcdef0", "Status": "SUCCESS"}


@pytest.mark.parametrize("downloads, redirect_line", [("proxy", False), ("redirect", True)])
def test_the_artifact_downloads_parameter_reaches_the_proxy_environment(
    proxy, tmp_path, downloads, redirect_line
):
    script = user_data(proxy)
    start = script.index("install -d -m 0700 /etc/mlflow-proxy")
    end = script.index("fi\n", script.index("artifact_downloads=")) + len("fi\n")
    part = as_substituted(script[start:end].replace("${ArtifactDownloads}", downloads))
    part = part.replace("/etc/mlflow-proxy", f"{tmp_path}/etc/mlflow-proxy")
    subprocess.run(["bash", "-euc", part], check=True, timeout=10)
    lines = (tmp_path / "etc/mlflow-proxy/proxy.env").read_text().split()
    assert ("MLFLOW_PROXY_ARTIFACT_DOWNLOAD_REDIRECT=true" in lines) is redirect_line
    assert "MLFLOW_PROXY_ARTIFACT_STORE_URI=s3://placeholder/" in lines
