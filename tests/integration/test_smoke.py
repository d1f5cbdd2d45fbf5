"""`python -m smoke` (what `make smoke` runs) against the stand-in chain, in both modes: once from
a stack in moto (the stand-in's moto server, as CloudFormation and Secrets Manager) whose
ProxyUrl is the stand-in's proxy, once given a URL and a wrong token."""

import json
import os
import re
import subprocess
import sys

import boto3
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from local import fixed_credentials
from local.stand_in import REPO_ROOT
from local.stand_in_stack import create_stack
from smoke.__main__ import LABEL, PASS

pytestmark = pytest.mark.slow

STACK = "mlflow-proxy-smoke"
# Every check the smoke test makes, in the order it prints them.
CHECKS = [
    "/health answers",
    "no token gets 401",
    "a wrong token gets 401",
    "create experiment",
    "log run",
    "search runs",
    "artifact round trip",
    "register model",
    "log trace",
    "read-only token cannot write",
    "/ui redirects to a presigned URL",
    "clean up",
]


def smoke(*args, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    return subprocess.run(
        [sys.executable, "-m", "smoke", *args],
        cwd=REPO_ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def results(stdout):
    """{check: result} from the table smoke prints last (columns are two or more spaces apart)."""
    rows = stdout[stdout.index("\ncheck ") :].splitlines()[2:-2]
    return dict(re.split(r"\s{2,}", row)[:2] for row in rows)


def test_smoke_passes_from_a_stack_and_leaves_nothing_behind(stand_in):
    moto = dict(
        AWS_ENDPOINT_URL=stand_in.s3_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    session = boto3.session.Session(
        region_name=fixed_credentials.REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stack = f"{STACK}-{stand_in.mode}"
    tokens = json.dumps(fixed_credentials.PROXY_TOKENS)
    create_stack(session, stack, stand_in.proxy_url, tokens, endpoint_url=stand_in.s3_url)

    result = smoke("--stack", stack, "--region", fixed_credentials.REGION, **moto)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"stack {stack} in {fixed_credentials.REGION}" in output
    seen = results(result.stdout)
    assert list(seen) == CHECKS, output
    # Traces through the proxy are issue 9's: stored without spans until it is fixed.
    assert seen.pop("log trace") == PASS, output
    assert set(seen.values()) == {PASS}, output
    assert result.stdout.rstrip().endswith("PASSED")
    # The token never appears in what it prints.
    assert fixed_credentials.DEMO_TOKEN not in output

    client = MlflowClient(tracking_uri=stand_in.mlflow_url)
    left = [e.name for e in client.search_experiments() if e.name.startswith(LABEL)]
    assert not left
    assert not [m.name for m in client.search_registered_models() if m.name.startswith(LABEL)]
    deleted = [e.name for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)]
    assert [name for name in deleted if name.startswith(LABEL)], "the smoke test's experiment"


def test_smoke_with_a_wrong_token_fails_and_says_where(stand_in):
    result = smoke("--url", stand_in.proxy_url, "--token", "not-a-token-of-this-proxy")

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    seen = results(result.stdout)
    assert seen["/health answers"] == PASS
    assert seen["no token gets 401"] == PASS
    assert seen["create experiment"] == "FAIL", output
    assert {seen[check] for check in CHECKS[4:9]} == {"skipped"}, output
    assert result.stdout.rstrip().endswith("FAILED")
