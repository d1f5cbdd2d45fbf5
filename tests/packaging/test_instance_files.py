"""The files the instances run, checked with the tools that understand them."""

import json
import re
import runpy
import shutil
import subprocess
from pathlib import Path

import pytest

from packaging_support import HELPERS, VENV_BIN, unit_settings

BOOTSTRAP = HELPERS / "bootstrap.sh"
UNIT = HELPERS / "mlflow-proxy.service"
CLOUDWATCH_CONFIG = HELPERS / "amazon-cloudwatch-agent.json"


def test_bootstrap_is_valid_bash():
    subprocess.run(["bash", "-n", str(BOOTSTRAP)], check=True)


def test_bootstrap_passes_shellcheck():
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(VENV_BIN))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (Debian package shellcheck)")
    result = subprocess.run([shellcheck, "--severity=style", str(BOOTSTRAP)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart's program exists; the instances have /usr/bin/python3.
    if not Path("/usr/bin/python3").exists():
        pytest.skip("/usr/bin/python3 is missing here")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text())
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    # Unknown or misspelt directives are only warnings: they count as failures here.
    problems = [line for line in result.stderr.splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not problems, result.stderr


def test_unit_runs_unprivileged_and_sandboxed():
    service = unit_settings("Service")
    assert service["User"] == ["mlflow-proxy"]
    assert service["EnvironmentFile"] == ["/etc/mlflow-proxy/proxy.env"]
    assert service["CapabilityBoundingSet"] == [""]
    for directive in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "MemoryDenyWriteExecute",
    ):
        assert service[directive] == ["yes"], directive
    assert service["ProtectSystem"] == ["strict"]
    assert service["Restart"] == ["always"]


def test_unit_serves_the_app_factory_on_port_5000():
    (exec_start,) = unit_settings("Service")["ExecStart"]
    assert exec_start.startswith("/usr/bin/python3 -m gunicorn -c /opt/mlflow-proxy/app/gunicorn.conf.py")
    assert "--bind 0.0.0.0:5000" in exec_start
    assert exec_start.endswith("'mlflow_proxy:create_app()'")


def test_cloudwatch_config_ships_the_proxy_and_bootstrap_logs():
    config = json.loads(CLOUDWATCH_CONFIG.read_text())
    collected = config["logs"]["logs_collected"]["files"]["collect_list"]
    paths = {entry["file_path"] for entry in collected}
    unit_log = unit_settings("Service")["StandardOutput"][0].removeprefix("append:")
    assert unit_log in paths
    assert "/var/log/mlflow-proxy/bootstrap.log" in paths
    assert 'LOG_DIR/bootstrap.log' in BOOTSTRAP.read_text()
    # bootstrap.sh fills in the group from MLFLOW_PROXY_LOG_GROUP.
    assert all("log_group_name" not in entry for entry in collected)


def test_bootstrap_fills_the_log_group_into_the_cloudwatch_config(tmp_path):
    """Runs the embedded config step of bootstrap.sh against the real config file."""
    script = BOOTSTRAP.read_text()
    step = re.search(r"<<'PY'\n(.*?)\nPY\n", script, re.S).group(1)
    result = subprocess.run(
        ["python3", "-", str(CLOUDWATCH_CONFIG), "/mlflow/proxy-stack"],
        input=step,
        capture_output=True,
        text=True,
        check=True,
    )
    collected = json.loads(result.stdout)["logs"]["logs_collected"]["files"]["collect_list"]
    assert {entry["log_group_name"] for entry in collected} == {"/mlflow/proxy-stack"}


def test_unit_and_gunicorn_config_agree_on_the_control_socket():
    """gunicorn.conf.py disables gunicorn's control socket: the unit neither names a path for one
    (it would be ignored) nor keeps a runtime directory for it."""
    gunicorn_conf = runpy.run_path(str(HELPERS / "app" / "gunicorn.conf.py"))
    service = unit_settings("Service")
    (exec_start,) = service["ExecStart"]
    if gunicorn_conf.get("control_socket_disable"):
        assert "--control-socket" not in exec_start
        assert "RuntimeDirectory" not in service
    else:
        assert "--control-socket /run/" in exec_start and service["RuntimeDirectory"]
