"""The routes outside /api/ that the proxy forwards, and those it does not."""

import pytest
import requests
from werkzeug.wrappers import Response

from mlflow_proxy.artifacts import DOWNLOAD_HEADERS
from mlflow_proxy.routes import FORWARDED_PATHS, METHODS, SERVER_DOWNLOAD_RULES, api_path
from proxy_support import WRITER


@pytest.mark.parametrize("path", FORWARDED_PATHS)
def test_each_route_outside_the_api_is_forwarded_with_its_query(proxy, upstream, path):
    for method in METHODS:
        response = requests.request(method, proxy + path + "?a=1", headers=WRITER, data=b"{}")
        assert response.status_code == 200, (method, path, response.text)
        assert (upstream.last.method, upstream.last.raw_uri) == (method, path + "?a=1")


@pytest.mark.parametrize(
    "rule", SERVER_DOWNLOAD_RULES, ids=lambda rule: rule.replace("<model_id>", "m-1")
)
def test_downloads_the_server_serves_leave_as_downloads_that_no_browser_runs(
    proxy, upstream, rule
):
    # MLflow serves an HTML artifact as text/html (as an attachment, with nosniff).
    path = rule.replace("<model_id>", "m-1") + "?path=page.html"
    upstream.respond = lambda request: Response(b"<script></script>", content_type="text/html")
    response = requests.get(proxy + path, headers=WRITER)
    assert response.status_code == 200
    assert upstream.last.raw_uri == path
    assert response.content == b"<script></script>"
    for name, value in DOWNLOAD_HEADERS.items():
        assert response.headers[name] == value


def test_forwarded_routes_need_a_token(proxy, upstream):
    for path in FORWARDED_PATHS + SERVER_DOWNLOAD_RULES:
        assert requests.get(proxy + path).status_code == 401
    assert upstream.requests == []


@pytest.mark.parametrize(
    "path",
    ["/version/x", "/v1/traces/x", "/v1/metrics", "/static-files/main.js", "/gateway/x/mlflow"],
)
def test_routes_next_to_them_are_not_forwarded(proxy, upstream, path):
    response = requests.get(proxy + path, headers=WRITER)
    assert response.status_code == 404
    assert response.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert upstream.requests == []


def test_api_path_maps_only_the_ajax_root():
    assert api_path("/ajax-api/2.0/mlflow/runs/search") == "/api/2.0/mlflow/runs/search"
    assert api_path("/api/2.0/mlflow/runs/search") == "/api/2.0/mlflow/runs/search"
    assert api_path("/ajax-apis/2.0/mlflow/runs/search") == "/ajax-apis/2.0/mlflow/runs/search"
    assert api_path("/graphql") == "/graphql"
