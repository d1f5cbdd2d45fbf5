import re
from pathlib import Path

from mlflow_proxy.read_endpoints import READ_ONLY_POST_PATHS

# A copy of the team's shared list (MLflow 3.17's REST API), so the check runs in every clone.
ENDPOINT_LIST = Path(__file__).parent / "data" / "mlflow-rest-endpoints-3.17.txt"
_ENDPOINT = re.compile(r"^\s+(?P<method>[A-Z]+)\s+(?P<path>/\S+)\s+\((?P<rpc>\w+)\)\s*$")
# RPCs that only read, whatever their HTTP method; getOrCreate... creates.
_READING_RPC = re.compile(r"^(search|get(?!OrCreate)|list|batchGet|query|calculate)|^createPresignedDownloadUrl$")


def _derive(text: str) -> set[str]:
    paths = set()
    for line in text.splitlines():
        endpoint = _ENDPOINT.match(line)
        if endpoint and endpoint["method"] == "POST" and _READING_RPC.match(endpoint["rpc"]):
            # MLflow's protos spell one path without its slash; the server serves it with one.
            paths.add(re.sub(r"^/api/(\d\.\d)mlflow/", r"/api/\1/mlflow/", endpoint["path"]))
    return paths


def test_read_only_post_paths_match_the_mlflow_endpoint_list():
    assert READ_ONLY_POST_PATHS == _derive(ENDPOINT_LIST.read_text())


def test_read_only_post_paths_have_no_path_parameters():
    # Callers compare paths exactly: a templated path would need a matcher.
    assert not [path for path in READ_ONLY_POST_PATHS if re.search(r"[{<]", path)]


def test_derivation_sees_reads_and_skips_writes():
    sample = """
  POST   /api/2.0/mlflow/runs/search   (searchRuns)
  POST   /api/2.0/mlflow/runs/create   (createRun)
  POST   /api/3.0/mlflow/review-queues/get-or-create-user   (getOrCreateUserQueue)
  GET    /api/2.0/mlflow/runs/get   (getRun)
  POST   /api/2.0mlflow/experiments/search-datasets   (searchDatasets)
"""
    assert _derive(sample) == {
        "/api/2.0/mlflow/runs/search",
        "/api/2.0/mlflow/experiments/search-datasets",
    }
