import re
from pathlib import Path

import pytest

from mlflow_proxy.iam_actions import (
    _TABLE,
    ENDPOINT_ACTIONS,
    READ_ACTIONS,
    WRITE_ACTIONS,
    action_for,
)

ROOT = Path(__file__).resolve().parents[3]
ENDPOINT_LIST = ROOT / "tests" / "unit" / "proxy" / "data" / "mlflow-rest-endpoints-3.17.txt"
_ENDPOINT = re.compile(r"^\s+(?P<method>[A-Z]+)\s+/api/(?P<path>\S+)\s+\((?P<rpc>\w+)\)\s*$")
# The two actions not named after their RPC (Service Authorization Reference).
_RENAMED = {
    "getLatestVersions": "GetLatestModelVersions",
    "getModelVersionDownloadUri": "GetDownloadURIForModelVersionArtifacts",
}


def endpoint_rpcs() -> dict:
    rpcs = {}
    for line in ENDPOINT_LIST.read_text().splitlines():
        endpoint = _ENDPOINT.match(line)
        if endpoint:
            rpcs[(endpoint["method"], endpoint["path"])] = endpoint["rpc"]
    return rpcs


def test_every_row_is_an_mlflow_endpoint_named_by_the_rule():
    rpcs = endpoint_rpcs()
    for method, path, action in ENDPOINT_ACTIONS:
        rpc = rpcs[(method, path)]
        named = _RENAMED.get(rpc) or rpc[0].upper() + rpc[1:]
        # The v3 trace calls are listed with their v2 call's action (an assumption).
        assert named.removesuffix("V3") == action, (method, path, rpc)


def test_every_documented_action_has_an_endpoint_and_no_action_is_both():
    assert {action for _, _, action in ENDPOINT_ACTIONS} == READ_ACTIONS | WRITE_ACTIONS
    assert not READ_ACTIONS & WRITE_ACTIONS
    assert len(READ_ACTIONS | WRITE_ACTIONS) == 60  # 61 in the reference, less AccessUI


def test_every_action_is_written_down_with_its_source():
    facts = (ROOT / "docs" / "aws-facts.md").read_text()
    section = facts.split("## IAM actions for the MLflow REST API", 1)[1].split("\n## ", 1)[0]
    assert "Service Authorization Reference" in section
    assert not [a for a in READ_ACTIONS | WRITE_ACTIONS if f"`{a}`" not in section]


@pytest.mark.parametrize(
    "method, path, action",
    [
        ("POST", "/api/2.0/mlflow/runs/search", "SearchRuns"),
        ("POST", "/ajax-api/2.0/mlflow/runs/search", "SearchRuns"),
        ("GET", "/api/2.0/mlflow/traces/tr-0123abc/info", "GetTraceInfo"),
        ("DELETE", "/api/2.0/mlflow/logged-models/m-1/tags/my%20key", "DeleteLoggedModelTag"),
        ("GET", "/api/2.0/mlflow/registered-models/alias", "GetModelVersionByAlias"),
        ("DELETE", "/api/2.0/mlflow/registered-models/alias", "DeleteRegisteredModelAlias"),
        ("POST", "/api/3.0/mlflow/traces/search", "SearchTraces"),
        ("POST", "/api/3.0/mlflow/traces", "StartTrace"),
        # No documented action: datasets, logged-model creation, a path outside the API.
        ("POST", "/api/3.0/mlflow/datasets/create", None),
        ("POST", "/api/2.0/mlflow/logged-models", None),
        ("GET", "/api/3.0/mlflow/traces/get", None),
        ("GET", "/graphql", None),
        ("GET", "/api/2.0/mlflow/runs/get/extra", None),
    ],
)
def test_action_for(method, path, action):
    assert action_for(method, path) == action


def test_each_row_and_only_it_matches_its_own_calls():
    for method, path, action in ENDPOINT_ACTIONS:
        concrete = re.sub(r"\{\w+\}", "x1", path)
        matching = [row for row in _TABLE if row[0] == method and row[1].match(concrete)]
        assert [row[2] for row in matching] == [action], (method, path)
        assert action_for(method, "/api/" + concrete) == action
