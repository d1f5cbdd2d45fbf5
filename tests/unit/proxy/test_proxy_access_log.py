import base64
import re

import requests
from werkzeug.wrappers import Response

from proxy_support import READER, READER_TOKEN, SECRET_KEY, WRITER, WRITER_TOKEN

_LINE = re.compile(
    r"^client=(?P<client>\S+) caller=(?P<caller>\S+) method=(?P<method>\S+) path=(?P<path>\S+) "
    r"status=(?P<status>\d+) upstream_ms=(?P<upstream_ms>[\d.]+|-) total_ms=[\d.]+ "
    r"bytes_in=(?P<bytes_in>\d+) bytes_out=(?P<bytes_out>\d+)$"
)


def _access_lines(log, count):
    return [_LINE.match(line).groupdict() for line in log.access_lines(count)]


def test_one_line_per_request_with_caller_status_latency_and_bytes(proxy, upstream, proxy_log):
    upstream.respond = lambda request: Response(b"x" * 5000, content_type="text/plain")
    requests.post(proxy + "/api/2.0/mlflow/runs/log-batch?x=1", headers=WRITER, data=b"y" * 123)
    requests.post(proxy + "/api/2.0/mlflow/runs/create", headers=READER, data=b"{}")
    requests.get(proxy + "/api/2.0/mlflow/runs/get")
    requests.get(proxy + "/health")

    lines = _access_lines(proxy_log, 4)
    assert len(lines) == 4
    forwarded, denied, unauthenticated, health = lines
    assert forwarded["caller"] == "ci"
    assert forwarded["method"] == "POST"
    assert forwarded["path"] == "/api/2.0/mlflow/runs/log-batch"  # no query string
    assert forwarded["status"] == "200"
    assert forwarded["upstream_ms"] != "-"
    assert (forwarded["bytes_in"], forwarded["bytes_out"]) == ("123", "5000")
    assert forwarded["client"] == "127.0.0.1"
    assert (denied["caller"], denied["status"], denied["upstream_ms"]) == ("dashboards", "403", "-")
    assert (unauthenticated["caller"], unauthenticated["status"]) == ("-", "401")
    assert (health["path"], health["status"]) == ("/health", "200")


def test_client_address_comes_from_the_load_balancer(proxy, upstream, proxy_log):
    requests.get(proxy + "/health", headers={"X-Forwarded-For": "198.51.100.7"})
    assert _access_lines(proxy_log, 1)[0]["client"] == "198.51.100.7"


def test_behind_cloudfront_the_client_is_the_address_cloudfront_appended(proxy, upstream, proxy_log):
    # CloudFront appends the viewer's address to whatever X-Forwarded-For the viewer sent, and the
    # load balancer behind it preserves the header (docs/before-first-deploy.md#the-access-path):
    # a forged first entry must not become the logged client.
    requests.get(proxy + "/health", headers={"X-Forwarded-For": "203.0.113.66, 198.51.100.7"})
    assert _access_lines(proxy_log, 1)[0]["client"] == "198.51.100.7"


def test_a_path_cannot_forge_a_log_line(proxy, upstream, proxy_log):
    requests.get(proxy + "/api/2.0/mlflow/runs/get%0Aclient=forged", headers=WRITER)
    lines = proxy_log.access_lines(1)
    assert len(lines) == 1
    assert "\n" not in lines[0] and "%0A" in lines[0]


def test_no_token_secret_or_signature_is_ever_logged(proxy, upstream, proxy_log):
    basic = base64.b64encode(f"user:{READER_TOKEN}".encode()).decode()
    requests.get(proxy + "/api/2.0/mlflow/runs/get?token=" + WRITER_TOKEN, headers=WRITER)
    requests.get(proxy + "/api/2.0/mlflow/runs/get", headers={"Authorization": "Basic " + basic})
    requests.get(proxy + "/api/2.0/mlflow/runs/get", headers={"Authorization": "Bearer wrong-1"})
    upstream.respond = lambda request: Response("{}", status=500)
    requests.post(proxy + "/api/2.0/mlflow/runs/create", headers=WRITER, data=b"{}")

    assert len(_access_lines(proxy_log, 4)) == 4
    signatures = [
        re.search(r"Signature=([0-9a-f]{64})", sent.header("Authorization"))[1]
        for sent in upstream.requests
    ]
    forbidden = [WRITER_TOKEN, READER_TOKEN, basic, "wrong-1", SECRET_KEY, *signatures]
    for secret in forbidden:
        assert secret not in proxy_log.text
