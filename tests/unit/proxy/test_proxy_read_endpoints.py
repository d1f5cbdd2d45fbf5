import re
from pathlib import Path

from mlflow.server.graphql.graphql_schema_extensions import schema

from mlflow_proxy.read_endpoints import READ_ONLY_POST_PATHS, READ_ONLY_POST_PATHS_FROM_PROTOS
from mlflow_proxy.routes import GRAPHQL_PATHS, api_path

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
    assert READ_ONLY_POST_PATHS_FROM_PROTOS == _derive(ENDPOINT_LIST.read_text())
    assert READ_ONLY_POST_PATHS - READ_ONLY_POST_PATHS_FROM_PROTOS == {
        api_path(path) for path in GRAPHQL_PATHS
    }


def test_graphql_only_reads_in_the_installed_mlflow():
    # A read-only token may POST GraphQL: that holds while every field of MLflow's schema, the
    # "mutations" included, is a get, a list or a search (or the schema's own echo tests).
    graphql = schema.graphql_schema
    fields = [*graphql.query_type.fields, *graphql.mutation_type.fields]
    assert fields  # the schema was found
    assert [
        name for name in fields if not re.match(r"^(mlflow(Get|List|Search)|test)", name)
    ] == []


def test_otlp_span_export_is_not_a_read():
    assert "/v1/traces" not in READ_ONLY_POST_PATHS


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
