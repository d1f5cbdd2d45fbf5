"""The client-version matrix: MLflow clients of several versions, with only a token, via the proxy.

Each client is its own virtualenv (the Makefile builds one per requirements/client-*.txt; the
pinned 3.17.2 is .venv's own) and runs the same workload (local/workload.py: runs, registry,
artifacts, a logged model loaded back, a trace found with its spans) as a subprocess, against
the stand-in's proxy in both modes.
"""

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from local.stand_in import REPO_ROOT

pytestmark = pytest.mark.slow

CLIENTS = {mlflow.__version__: Path(sys.executable)} | {
    requirements.stem.removeprefix("client-"): REPO_ROOT
    / f".venv-{requirements.stem}"
    / "bin"
    / "python"
    for requirements in sorted((REPO_ROOT / "requirements").glob("client-*.txt"))
}
WORKLOAD_TIMEOUT_SECONDS = 300


def test_the_matrix_has_an_mlflow_2_and_an_mlflow_3_client():
    majors = {version.split(".")[0] for version in CLIENTS}
    assert {"2", "3"} <= majors, CLIENTS


@pytest.mark.parametrize("version", sorted(CLIENTS))
def test_a_token_only_client_runs_the_workload(stand_in, version):
    python = CLIENTS[version]
    assert python.exists(), f"{python} is missing: run `make clients`"
    environment = stand_in.client_environment()
    environment.update(
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        # Traces are sent before the workload searches for them.
        MLFLOW_ENABLE_ASYNC_TRACE_LOGGING="false",
    )
    finished = subprocess.run(
        [str(python), "-m", "local.workload"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=WORKLOAD_TIMEOUT_SECONDS,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-5000:]
    summary = json.loads(finished.stdout.strip().splitlines()[-1])
    assert summary["mlflow"] == version
    assert summary["trace_id"]
    expected_model_uri = "models:/m-" if version.startswith("3.") else "runs:/"
    assert summary["model_uri"].startswith(expected_model_uri)
