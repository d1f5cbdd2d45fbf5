"""The paths the proxy answers, and the methods it takes on them: the one definition.

MLflow 3.17's server (mlflow/server/__init__.py, handlers.get_endpoints, fastapi_app.py) serves
each REST endpoint under both /api/ and /ajax-api/ (the UI's prefix), and a few routes outside
them; docs/mlflow3.md lists every route and what the proxy does with it. The proxy forwards:
- FORWARDED_PREFIXES: the REST API (tracking, registry, traces, prompts, datasets, webhooks, ...)
  and, when the proxy does not serve artifacts itself, the artifact API;
- FORWARDED_PATHS and SERVER_DOWNLOAD_RULES: the routes outside them that clients call.
  SageMaker's support for some of them is not documented: they are forwarded, and SageMaker's
  answer reaches the caller.
ARTIFACT_PREFIXES are served from S3 by artifacts.py when MLFLOW_PROXY_ARTIFACT_STORE_URI is set.
"""

# Every method a route takes: OPTIONS too, which goes upstream like any other (Flask would
# otherwise answer it itself, before any token is checked).
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
API_ROOTS = ("/api", "/ajax-api")
_AJAX_ROOT = "/ajax-api/"
ARTIFACT_PREFIXES = tuple(f"{root}/2.0/mlflow-artifacts" for root in API_ROOTS)
FORWARDED_PREFIXES = tuple(
    f"{root}/{api}/"
    for root in API_ROOTS
    for api in ("2.0/mlflow", "3.0/mlflow", "2.0/mlflow-artifacts")
)
# MLflow serves GraphQL at /graphql only; /ajax-api/graphql is forwarded for servers that also
# serve it under the UI's prefix.
GRAPHQL_PATHS = ("/graphql", "/ajax-api/graphql")
FORWARDED_PATHS = (
    # The server's version: MLflow 3's client asks for it before it sends spans over OTLP.
    "/version",
    # OTLP/HTTP span export (mlflow/server/otel_api.py), where MLflow >= 3.4 clients send spans.
    "/v1/traces",
    *GRAPHQL_PATHS,
)
# Artifact bytes the server reads from its own store (by run and path, model name and version,
# logged model and path): forwarded, and given the artifact API's download headers
# (artifacts.DOWNLOAD_HEADERS) so that no browser runs them on the proxy's origin.
SERVER_DOWNLOAD_RULES = (
    "/get-artifact",
    "/model-versions/get-artifact",
    "/ajax-api/2.0/mlflow/logged-models/<model_id>/artifacts/files",
)


def api_path(path: str) -> str:
    """The /api/ form of a path MLflow also serves under /ajax-api/."""
    if path.startswith(_AJAX_ROOT):
        return "/api/" + path[len(_AJAX_ROOT) :]
    return path
