import base64
import json
import re

import requests
from werkzeug.wrappers import Response

from proxy_support import READER, READER_TOKEN, SECRET_KEY, WRITER, WRITER_TOKEN

# Other parts depend on these keys and types (CloudWatch metric filters, docs/security.md).
KEYS = {
    "client": str,
    "caller": str,
    "method": str,
    "path": str,
    "status": int,
    "upstream_ms": (float, int, type(None)),
    "total_ms": (float, int),
    "bytes_in": int,
    "bytes_out": int,
}


def _entries(log, count):
    entries = log.access_entries(count)
    for entry in entries:
        for key, kind in KEYS.items():
            assert isinstance(entry[key], kind), (key, entry)
        assert set(entry) - set(KEYS) <= {"error"}, entry
    return entries


def test_one_line_per_request_with_caller_status_latency_and_bytes(proxy, upstream, proxy_log):
    upstream.respond = lambda request: Response(b"x" * 5000, content_type="text/plain")
    requests.post(proxy + "/api/2.0/mlflow/runs/log-batch?x=1", headers=WRITER, data=b"y" * 123)
    requests.post(proxy + "/api/2.0/mlflow/runs/create", headers=READER, data=b"{}")
    requests.get(proxy + "/api/2.0/mlflow/runs/get")
    requests.get(proxy + "/health")

    lines = _entries(proxy_log, 4)
    assert len(lines) == 4
    forwarded, denied, unauthenticated, health = lines
    assert forwarded["caller"] == "ci"
    assert forwarded["method"] == "POST"
    assert forwarded["path"] == "/api/2.0/mlflow/runs/log-batch"  # no query string
    assert forwarded["status"] == 200
    assert forwarded["upstream_ms"] is not None
    assert (forwarded["bytes_in"], forwarded["bytes_out"]) == (123, 5000)
    assert forwarded["client"] == "127.0.0.1"
    assert "error" not in forwarded
    assert (denied["caller"], denied["status"], denied["upstream_ms"]) == ("dashboards", 403, None)
    assert denied["error"].startswith("PERMISSION_DENIED: ")
    assert (unauthenticated["caller"], unauthenticated["status"]) == ("-", 401)
    assert (health["path"], health["status"]) == ("/health", 200)


def test_client_address_comes_from_the_load_balancer(proxy, upstream, proxy_log):
    requests.get(proxy + "/health", headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
    requests.get(proxy + "/health", headers={"X-Forwarded-For": "2001:db8::1"})
    assert [entry["client"] for entry in _entries(proxy_log, 2)] == ["198.51.100.7", "2001:db8::1"]


def test_a_forged_forwarded_address_is_not_logged_as_a_client(proxy, upstream, proxy_log):
    forged = "198.51.100.1 caller=admin status=200"
    requests.get(proxy + "/health", headers={"X-Forwarded-For": forged})
    requests.get(proxy + "/health", headers={"X-Forwarded-For": '1.2.3.4", "caller": "admin'})
    lines = proxy_log.access_lines(2)
    # The peer that sent it, which is what a caller reaching gunicorn directly is.
    assert [json.loads(line)["client"] for line in lines] == ["127.0.0.1", "127.0.0.1"]
    assert all("admin" not in line for line in lines)


def test_behind_cloudfront_the_client_is_the_address_cloudfront_appended(proxy, upstream, proxy_log):
    # CloudFront appends the viewer's address to whatever X-Forwarded-For the viewer sent, and the
    # load balancer behind it preserves the header (docs/before-first-deploy.md#the-access-path):
    # a forged first entry must not become the logged client.
    requests.get(proxy + "/health", headers={"X-Forwarded-For": "203.0.113.66, 198.51.100.7"})
    assert json.loads(proxy_log.access_lines(1)[0])["client"] == "198.51.100.7"


def test_a_path_cannot_forge_a_log_line(proxy, upstream, proxy_log):
    requests.get(proxy + '/api/2.0/mlflow/runs/get%0A%22caller%22:%22admin%22', headers=WRITER)
    lines = proxy_log.access_lines(1)
    assert len(lines) == 1
    assert "\n" not in lines[0]
    entry = json.loads(lines[0])
    assert entry["caller"] == "-"  # the newline makes it no MLflow path: 404 before any token check
    assert entry["path"] == '/api/2.0/mlflow/runs/get\n"caller":"admin"'


def test_no_token_secret_or_signature_is_ever_logged(proxy, upstream, proxy_log):
    basic = base64.b64encode(f"user:{READER_TOKEN}".encode()).decode()
    requests.get(proxy + "/api/2.0/mlflow/runs/get?token=" + WRITER_TOKEN, headers=WRITER)
    requests.get(proxy + "/api/2.0/mlflow/runs/get", headers={"Authorization": "Basic " + basic})
    requests.get(proxy + "/api/2.0/mlflow/runs/get", headers={"Authorization": "Bearer wrong-1"})
    upstream.respond = lambda request: Response("{}", status=500)
    requests.post(proxy + "/api/2.0/mlflow/runs/create", headers=WRITER, data=b"{}")

    assert len(_entries(proxy_log, 4)) == 4
    signatures = [
        re.search(r"Signature=([0-9a-f]{64})", sent.header("Authorization"))[1]
        for sent in upstream.requests
    ]
    forbidden = [WRITER_TOKEN, READER_TOKEN, basic, "wrong-1", SECRET_KEY, *signatures]
    for secret in forbidden:
        assert secret not in proxy_log.text
