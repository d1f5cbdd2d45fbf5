"""The POST endpoints a read-only caller may call (GET, HEAD and OPTIONS are always allowed).

Derived from MLflow 3.17's REST endpoint list (`mlflow-rest-endpoints-3.17.txt`): the POSTs whose
RPC is a search, get, batchGet, query or calculate (not `getOrCreateUserQueue`, which creates),
plus `createPresignedDownloadUrl`, which only hands out a download link. MLflow's protos spell one
path without its slash (`/api/2.0mlflow/experiments/search-datasets`); the server serves it as
below. Each path is also served under /ajax-api/; callers.py maps that prefix onto /api/
(routes.api_path). tests/unit/proxy/test_proxy_read_endpoints.py re-derives this set from a copy
of the list.

Outside the protos, GraphQL (routes.GRAPHQL_PATHS) only reads in MLflow 3.17: its queries are
gets and searches, and its "mutations" are searches too (mlflow/server/graphql/); the same test
walks the schema, so a version that adds a writing field fails it. OTLP span export
(`POST /v1/traces`) writes and is refused.
"""

from mlflow_proxy.routes import GRAPHQL_PATHS, api_path

READ_ONLY_POST_PATHS_FROM_PROTOS = frozenset(
    {
        "/api/2.0/mlflow/experiments/search",
        "/api/2.0/mlflow/experiments/search-datasets",
        "/api/2.0/mlflow/runs/search",
        "/api/2.0/mlflow/artifacts/presigned-download-url",
        "/api/2.0/mlflow/logged-models/search",
        "/api/2.0/mlflow/registered-models/get-latest-versions",
        "/api/3.0/mlflow/traces/batchGetInfos",
        "/api/3.0/mlflow/traces/search",
        "/api/3.0/mlflow/traces/calculate-filter-correlation",
        "/api/3.0/mlflow/traces/metrics",
        "/api/3.0/mlflow/issues/search",
        "/api/3.0/mlflow/datasets/search",
        "/api/3.0/mlflow/prompt-optimization/jobs/search",
    }
)
READ_ONLY_POST_PATHS = READ_ONLY_POST_PATHS_FROM_PROTOS | {api_path(path) for path in GRAPHQL_PATHS}
