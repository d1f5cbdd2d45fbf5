import contextlib
import gzip
import hashlib
import http.client
import http.server
import json
import socket
import threading
from urllib.parse import urlsplit

import pytest
import requests
from werkzeug.wrappers import Response

from proxy_support import TRACKING_ARN, WRITER, raw_upstream

SEARCH = "/api/2.0/mlflow/experiments/search"


def _raw_request(base_url, method, path, headers, body_chunks=None):
    """Send a request with http.client, so the test decides every header (chunked bodies too)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if body_chunks is None:
            connection.endheaders()
        else:
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            try:
                for chunk in body_chunks:
                    connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                connection.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the proxy may answer 413 and close before the whole body is sent
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_every_mlflow_prefix_and_method_is_forwarded(proxy, upstream):
    paths = [
        "/api/2.0/mlflow/runs/get",
        "/api/3.0/mlflow/traces/get",
        "/api/2.0/mlflow-artifacts/artifacts/a/b.txt",
        "/ajax-api/2.0/mlflow/runs/get",
        "/ajax-api/3.0/mlflow/traces/get",
        "/ajax-api/2.0/mlflow-artifacts/artifacts/a/b.txt",
    ]
    for path in paths:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            response = requests.request(method, proxy + path, headers=WRITER, data=b"{}")
            assert response.status_code == 200, (method, path, response.text)
            assert (upstream.last.method, upstream.last.raw_uri) == (method, path)
    assert len(upstream.requests) == len(paths) * 6


@pytest.mark.parametrize(
    "path", ["/index.html", "/api/2.0/other/thing", "/api/2.0/mlflowx/runs/get", "/graphqlx", "/static/x"]
)
def test_anything_else_is_a_json_404_and_never_forwarded(proxy, upstream, path):
    response = requests.get(proxy + path, headers=WRITER)
    assert response.status_code == 404
    assert response.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert upstream.requests == []


@pytest.mark.parametrize(
    "path", ["/api/2.0/mlflow/../../secret", "/api/2.0/mlflow/runs/%2E%2E/x", "/api/2.0/mlflow/./x"]
)
def test_dot_segments_are_refused(proxy, upstream, path):
    status, _, body = _raw_request(proxy, "GET", path, WRITER.items())
    assert status == 400
    assert json.loads(body)["error_code"] == "INVALID_PARAMETER_VALUE"
    assert upstream.requests == []


def test_health_needs_no_token_and_makes_no_upstream_call(proxy, upstream):
    response = requests.get(proxy + "/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert upstream.requests == []


def test_hop_by_hop_authorization_and_host_are_not_forwarded(proxy, upstream):
    status, _, _ = _raw_request(
        proxy,
        "GET",
        "/api/2.0/mlflow/runs/get?run_id=1",
        [
            *WRITER.items(),
            ("Connection", "keep-alive, X-Private-Hop"),
            ("X-Private-Hop", "drop me"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Amz-Security-Token", "caller-supplied"),
            ("X-Custom-End-To-End", "keep me"),
        ],
    )
    assert status == 200
    sent = upstream.last
    names = {name.lower() for name, _ in sent.headers}
    for dropped in (
        "connection",
        "x-private-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "x-forwarded-for",
        "x-amz-security-token",
    ):
        assert dropped not in names
    assert sent.header("X-Custom-End-To-End") == "keep me"
    assert sent.header("Authorization").startswith("AWS4-HMAC-SHA256 ")
    assert WRITER["Authorization"] not in str(sent.headers)
    assert sent.header("Host") == urlsplit(upstream.url).netloc


def test_method_override_headers_are_not_forwarded(proxy, upstream):
    # A read-only caller's GET must not turn into a write wherever an override is honoured.
    override = {
        "X-HTTP-Method-Override": "DELETE",
        "X-HTTP-Method": "DELETE",
        "X-Method-Override": "DELETE",
    }
    response = requests.get(
        proxy + "/api/2.0/mlflow/runs/get?run_id=1", headers={**WRITER, **override}
    )
    assert response.status_code == 200
    names = {name.lower() for name, _ in upstream.last.headers}
    assert not names & {name.lower() for name in override}


def test_routing_header_from_configuration_overrides_the_callers(proxy, upstream):
    response = requests.get(
        proxy + "/api/2.0/mlflow/runs/get",
        headers={
            **WRITER,
            "x-mlflow-sm-tracking-server-arn": "arn:aws:sagemaker:us-west-2:999999999999:"
            "mlflow-tracking-server/someone-elses",
            "x-sm-mlflow-app-arn": "arn:aws:sagemaker:us-west-2:999999999999:mlflow-app/app-X",
        },
    )
    assert response.status_code == 200
    routing = [v for k, v in upstream.last.headers if k.lower() == "x-mlflow-sm-tracking-server-arn"]
    assert routing == [TRACKING_ARN]
    assert upstream.last.header("x-sm-mlflow-app-arn") is None


def test_upstream_host_comes_from_configuration_not_the_request(proxy, upstream):
    response = requests.get(
        proxy + "/api/2.0/mlflow/runs/get", headers={**WRITER, "Host": "evil.example.com"}
    )
    assert response.status_code == 200
    assert upstream.last.header("Host") == urlsplit(upstream.url).netloc


def test_body_is_forwarded_with_its_hash(proxy, upstream):
    body = b'{"experiment_ids": ["0"], "max_results": 5}'
    response = requests.post(proxy + SEARCH, headers=WRITER, data=body)
    assert response.status_code == 200
    assert upstream.last.body == body
    assert upstream.last.header("X-Amz-Content-SHA256") == hashlib.sha256(body).hexdigest()
    assert upstream.last.header("Content-Length") == str(len(body))


def test_empty_body_carries_the_empty_hash(proxy, upstream):
    requests.get(proxy + "/api/2.0/mlflow/runs/get?run_id=1", headers=WRITER)
    assert upstream.last.header("X-Amz-Content-SHA256") == hashlib.sha256(b"").hexdigest()


def test_a_get_with_a_body_and_an_empty_chunked_body_are_read_and_hashed(proxy, upstream):
    # Only a request framed without a body (no Transfer-Encoding, no Content-Length or 0) skips
    # reading it (request_body.has_no_body).
    body = b'{"run_id": "1"}'
    response = requests.get(proxy + "/api/2.0/mlflow/runs/get", headers=WRITER, data=body)
    assert response.status_code == 200
    assert upstream.last.body == body
    assert upstream.last.header("X-Amz-Content-SHA256") == hashlib.sha256(body).hexdigest()
    status, _, _ = _raw_request(proxy, "POST", SEARCH, WRITER.items(), body_chunks=[])
    assert status == 200
    assert upstream.last.body == b""
    assert upstream.last.header("X-Amz-Content-SHA256") == hashlib.sha256(b"").hexdigest()
    assert upstream.last.header("Content-Length") == "0"


def test_a_body_bigger_than_memory_spool_arrives_whole(start_proxy, proxy_env, upstream):
    body = bytes(range(256)) * (3 * 1024 * 1024 // 256)  # 3 MiB: spooled to a file
    url = start_proxy(proxy_env)
    response = requests.put(
        url + "/api/2.0/mlflow-artifacts/artifacts/big.bin", headers=WRITER, data=body
    )
    assert response.status_code == 200
    assert hashlib.sha256(upstream.last.body).digest() == hashlib.sha256(body).digest()
    assert upstream.last.header("X-Amz-Content-SHA256") == hashlib.sha256(body).hexdigest()


def test_chunked_body_under_the_limit_is_forwarded(start_proxy, proxy_env, upstream):
    url = start_proxy({**proxy_env, "MLFLOW_PROXY_MAX_BODY_BYTES": "1000"})
    status, _, _ = _raw_request(url, "POST", SEARCH, WRITER.items(), [b"a" * 400, b"b" * 400])
    assert status == 200
    assert upstream.last.body == b"a" * 400 + b"b" * 400
    assert upstream.last.header("Content-Length") == "800"


def test_content_length_over_the_limit_is_413_before_reading(start_proxy, proxy_env, upstream):
    url = start_proxy({**proxy_env, "MLFLOW_PROXY_MAX_BODY_BYTES": "1000"})
    response = requests.post(url + SEARCH, headers=WRITER, data=b"x" * 1001)
    assert response.status_code == 413
    assert response.json()["error_code"] == "RESOURCE_LIMIT_EXCEEDED"
    assert "MLFLOW_PROXY_MAX_BODY_BYTES" in response.json()["message"]
    assert upstream.requests == []


def test_chunked_body_past_the_limit_is_413(start_proxy, proxy_env, upstream):
    url = start_proxy({**proxy_env, "MLFLOW_PROXY_MAX_BODY_BYTES": "1000"})
    status, _, body = _raw_request(url, "POST", SEARCH, WRITER.items(), [b"z" * 600] * 3)
    assert status == 413
    assert b"RESOURCE_LIMIT_EXCEEDED" in body
    assert upstream.requests == []


def test_upstream_errors_pass_through_untouched(proxy, upstream):
    sagemaker_error = b'{"message": "User is not authorized to perform sagemaker-mlflow:GetRun"}'
    upstream.respond = lambda request: Response(
        sagemaker_error, status=403, content_type="application/x-amz-json-1.1"
    )
    response = requests.get(proxy + "/api/2.0/mlflow/runs/get?run_id=1", headers=WRITER)
    assert response.status_code == 403
    assert response.content == sagemaker_error
    assert response.headers["Content-Type"] == "application/x-amz-json-1.1"


def test_gzip_response_is_passed_untouched(proxy, upstream):
    compressed = gzip.compress(b'{"runs": []}' * 100)
    upstream.respond = lambda request: Response(
        compressed,
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )
    status, headers, body = _raw_request(
        proxy, "GET", "/api/2.0/mlflow/runs/get", [*WRITER.items(), ("Accept-Encoding", "gzip")]
    )
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"] == "application/json"
    assert body == compressed
    assert upstream.last.header("Accept-Encoding") == "gzip"


def test_response_is_streamed_in_chunks(proxy, upstream):
    # The upstream sends a first chunk and then waits: the client must receive that chunk
    # before the upstream finishes, which a proxy holding the whole body could not do.
    release = threading.Event()

    def chunks():
        yield b"first-chunk"
        release.wait(timeout=30)
        yield b"second-chunk"

    upstream.respond = lambda request: Response(chunks(), content_type="application/octet-stream")
    with requests.get(
        proxy + "/api/2.0/mlflow-artifacts/artifacts/x", headers=WRITER, stream=True
    ) as response:
        stream = response.iter_content(chunk_size=None)
        assert next(stream) == b"first-chunk"
        release.set()
        assert b"".join(stream) == b"second-chunk"


def test_refused_connection_is_502(start_proxy, proxy_env):
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed_port = placeholder.getsockname()[1]
    url = start_proxy({**proxy_env, "SM_MLFLOW_ENDPOINT_URL": f"http://127.0.0.1:{closed_port}"})
    response = requests.get(url + "/api/2.0/mlflow/runs/get", headers=WRITER)
    assert response.status_code == 502
    assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"


def test_slow_upstream_is_504(start_proxy, proxy_env, upstream):
    release = threading.Event()

    def slow(request):
        release.wait(timeout=30)
        return Response("{}", content_type="application/json")

    upstream.respond = slow
    url = start_proxy({**proxy_env, "MLFLOW_PROXY_READ_TIMEOUT_SECONDS": "0.2"})
    try:
        response = requests.get(url + "/api/2.0/mlflow/runs/get", headers=WRITER)
    finally:
        release.set()
    assert response.status_code == 504
    assert response.json()["error_code"] == "DEADLINE_EXCEEDED"


def test_upstream_status_and_content_type_absence_are_kept(proxy, upstream):
    def no_content(request):
        response = Response(status=204)
        del response.headers["Content-Type"]
        return response

    upstream.respond = no_content
    response = requests.delete(proxy + "/api/3.0/mlflow/traces/t-1/tags", headers=WRITER)
    assert response.status_code == 204
    assert "Content-Type" not in response.headers


def test_pooled_connections_are_reused(start_proxy, proxy_env):
    # werkzeug's server closes every connection, so this upstream is http.server with keep-alive.
    client_ports = set()

    class KeepAlive(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            client_ports.add(self.client_address[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = start_proxy(
            {**proxy_env, "SM_MLFLOW_ENDPOINT_URL": f"http://127.0.0.1:{server.server_port}"}
        )
        for _ in range(5):
            assert requests.get(url + "/api/2.0/mlflow/runs/get", headers=WRITER).ok
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert len(client_ports) == 1


def test_head_is_forwarded_and_its_connection_released(start_proxy, proxy_env, upstream):
    url = start_proxy(proxy_env)
    for _ in range(3):
        response = requests.head(url + "/api/2.0/mlflow-artifacts/artifacts/x", headers=WRITER)
        assert response.status_code == 200
        assert response.content == b""
    assert [sent.method for sent in upstream.requests] == ["HEAD"] * 3


def test_an_upstream_body_that_breaks_off_is_not_passed_as_complete(
    start_proxy, proxy_env, proxy_log
):
    class Truncating(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Truncating)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = start_proxy(
            {**proxy_env, "SM_MLFLOW_ENDPOINT_URL": f"http://127.0.0.1:{server.server_port}"}
        )
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(url + "/api/2.0/mlflow-artifacts/artifacts/x", headers=WRITER)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert "broke off after 10 bytes" in proxy_log.text


@pytest.fixture
def proxy_to_raw_upstream(start_proxy, proxy_env):
    """start(response bytes) -> (proxy URL, raw requests the upstream received)."""
    with contextlib.ExitStack() as stack:

        def start(response: bytes):
            url, received = stack.enter_context(raw_upstream(response))
            return start_proxy({**proxy_env, "SM_MLFLOW_ENDPOINT_URL": url}), received

        yield start


def test_a_response_with_both_content_length_and_chunked_is_relayed_by_its_chunks(
    proxy_to_raw_upstream,
):
    proxy, _ = proxy_to_raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nc\r\nhello world!\r\n0\r\n\r\n"
    )
    status, headers, body = _raw_request(proxy, "GET", "/api/2.0/mlflow/runs/get", WRITER.items())
    assert (status, body) == (200, b"hello world!")
    assert "Content-Length" not in headers


@pytest.mark.parametrize(
    "header_lines",
    [
        b"X-Folded: first\r\n second\r\n",  # obs-fold (RFC 9112 section 5.2)
        b"this line has no colon\r\n",
        b"X-Control: a\x01b\r\n",
        b"X Space: in the name\r\n",
    ],
)
def test_a_malformed_upstream_header_is_a_502_in_mlflow_json(
    proxy_to_raw_upstream, proxy_log, header_lines
):
    proxy, _ = proxy_to_raw_upstream(
        b"HTTP/1.1 200 OK\r\n" + header_lines + b"Content-Length: 2\r\n\r\n{}"
    )
    status, headers, body = _raw_request(proxy, "GET", "/api/2.0/mlflow/runs/get", WRITER.items())
    assert status == 502
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error_code"] == "INTERNAL_ERROR"
    assert "Traceback" not in proxy_log.text


def test_proxy_connection_is_hop_by_hop_both_ways(proxy_to_raw_upstream):
    proxy, received = proxy_to_raw_upstream(
        b"HTTP/1.1 200 OK\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    status, headers, _ = _raw_request(
        proxy,
        "GET",
        "/api/2.0/mlflow/runs/get",
        [*WRITER.items(), ("Proxy-Connection", "keep-alive")],
    )
    assert status == 200
    assert headers["X-Kept"] == "yes"
    assert "proxy-connection" not in {name.lower() for name in headers}
    assert b"proxy-connection" not in received[0].lower()


@pytest.mark.parametrize(
    "method, path, signed_as_read_only",
    [
        ("GET", "/api/2.0/mlflow/runs/get", True),  # GetRun: the read-only role may
        ("POST", "/ajax-api/2.0/mlflow/runs/search", True),  # SearchRuns
        ("POST", "/graphql", False),  # no IAM action named: the read-only role would be refused
        ("POST", "/api/3.0/mlflow/datasets/search", False),
    ],
)
def test_a_read_only_caller_is_signed_with_the_read_only_role_where_iam_names_the_action(
    method, path, signed_as_read_only
):
    from werkzeug.test import EnvironBuilder

    from mlflow_proxy.config import load_config
    from mlflow_proxy.forwarding import Upstream

    config = load_config({"SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN, "MLFLOW_PROXY_AUTH": "none",
                          "SM_MLFLOW_ENDPOINT_URL": "http://127.0.0.1:9"})
    main, read_only = object(), object()
    upstream = Upstream(config, main, read_only)
    request = EnvironBuilder(method=method, path=path).get_request()
    assert upstream._signing_credentials(request, read_only=False) is main
    expected = read_only if signed_as_read_only else main
    assert upstream._signing_credentials(request, read_only=True) is expected
