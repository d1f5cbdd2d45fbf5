"""`python -m local.demo`, as `make demo` runs it."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

from local import fixed_credentials
from local.demo import LOG_NAMES, LOGS_HEADING
from local.stand_in import REPO_ROOT, StandIn, listening

pytestmark = pytest.mark.slow

DEMO_TIMEOUT_SECONDS = 300


@contextmanager
def demo(*args):
    """The demo as a child process; whatever happens, it is stopped the way Ctrl-C stops it."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MLFLOW_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    process = subprocess.Popen(
        [sys.executable, "-m", "local.demo", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # SIGTERM lets the demo stop its own children; a hung demo would otherwise hang the test.
    watchdog = threading.Timer(DEMO_TIMEOUT_SECONDS, process.send_signal, [signal.SIGTERM])
    watchdog.start()
    try:
        yield process
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()


def printed_settings(output):
    uri = re.search(r"^  export MLFLOW_TRACKING_URI=(http://127\.0\.0\.1:\d+)$", output, re.M)
    token = re.search(r"^  export MLFLOW_TRACKING_TOKEN=(\S+)$", output, re.M)
    assert uri and token, output
    return uri.group(1), token.group(1)


def printed_logs(output):
    """{part: path} of the logs the demo says it keeps."""
    logs = {}
    _, _, listed = output.partition(LOGS_HEADING)
    for part, name in LOG_NAMES.items():
        found = re.search(rf"^  {re.escape(name)} +(\S+)$", listed, re.M)
        assert found, output
        logs[part] = REPO_ROOT / found.group(1)
    return logs


def test_demo_runs_the_workload_and_prints_both_tokens_and_where_its_logs_stay():
    with demo("--mode", "serverless", "--exit-after-workload") as process:
        output = process.stdout.read()
        returncode = process.wait()

    assert returncode == 0, output
    assert "with alias 'champion'" in output
    assert "github:demo-org/demo-repo@refs/heads/main" in output  # the OIDC caller's log line
    assert "mlflow-app/" in output
    assert re.search(rf"^  read-write token {fixed_credentials.DEMO_TOKEN}$", output, re.M)
    assert re.search(rf"^  read-only token  {fixed_credentials.READ_ONLY_TOKEN} ", output, re.M)
    # The proxy has stopped: nothing may suggest pointing a client at it.
    assert "export MLFLOW_TRACKING" not in output
    assert "running proxy" not in output
    logs = printed_logs(output)
    assert all(path.is_relative_to(REPO_ROOT / "local" / ".run") for path in logs.values())
    assert all(path.stat().st_size > 0 for path in logs.values()), logs
    # The workload's calls are in the proxy's access log.
    assert "/api/2.0/mlflow/experiments/create" in logs["proxy"].read_text()


def test_demo_stops_every_process_on_ctrl_c():
    lines = []
    with demo("--mode", "tracking") as process:
        for line in process.stdout:
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        output = "".join(lines)
        assert "press Ctrl-C" in output, output
        uri, token = printed_settings(output)
        assert token == fixed_credentials.DEMO_TOKEN
        assert uri == re.search(r"^  proxy +(\S+)$", output, re.M).group(1)
        ports = [int(port) for port in re.findall(r"http://127\.0\.0\.1:(\d+)", output)]
        # S3, mlflow, emulator, proxy, and the local OIDC issuer (a thread of the demo)
        assert len(set(ports)) == len(StandIn.PARTS) + 1, output
        assert all(listening(port) for port in set(ports))

        process.send_signal(signal.SIGINT)
        # A second Ctrl-C while it stops (about 3 s) must not cut the stop short.
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        output += process.stdout.read()
        returncode = process.wait()

    assert returncode == 0, output
    assert "Stopped." in output
    still_listening = [port for port in set(ports) if listening(port)]
    assert not still_listening, (still_listening, output)
