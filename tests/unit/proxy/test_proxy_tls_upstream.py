"""An HTTPS endpoint: the proxy verifies it against the CAs OpenSSL is told to trust, and keeps
its connections (what benchmarks/delayed_upstream.py relies on to measure TLS upstreams)."""

import http.server
import ssl
import threading
import urllib.request

import pytest

from benchmarks.delayed_upstream import write_certificates
from proxy_support import WRITER


class KeepAlive(http.server.BaseHTTPRequestHandler):
    """Answers 200 with a Content-Length on connections kept alive (werkzeug's development
    server closes each), and notes the client port of every request."""

    protocol_version = "HTTP/1.1"
    ports: list = []

    def do_GET(self):
        self.ports.append(self.client_address[1])
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *arguments):
        pass


@pytest.fixture
def tls_upstream(tmp_path):
    """(URL, the CA's file, the client ports seen) of an HTTPS server for 127.0.0.1."""
    ca_file = write_certificates(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "upstream-cert.pem", tmp_path / "upstream-key.pem")
    handler = type("Recording", (KeepAlive,), {"ports": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}", ca_file, handler.ports
    server.shutdown()
    server.server_close()
    thread.join()


def get(proxy: str) -> tuple:
    """(status, body) of a small call through the proxy."""
    request = urllib.request.Request(f"{proxy}/api/2.0/mlflow/experiments/list", headers=WRITER)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_an_https_endpoint_trusted_through_ssl_cert_file_keeps_one_connection(
    tls_upstream, proxy_env, start_proxy, monkeypatch
):
    url, ca_file, ports = tls_upstream
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    proxy = start_proxy({**proxy_env, "SM_MLFLOW_ENDPOINT_URL": url})
    assert [get(proxy) for _ in range(5)] == [(200, b'{"ok": true}')] * 5
    assert len(ports) == 5 and len(set(ports)) == 1  # one TLS connection, five requests


def test_an_https_endpoint_with_a_certificate_nobody_trusts_is_refused(
    tls_upstream, proxy_env, start_proxy, monkeypatch
):
    url, _, ports = tls_upstream
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    proxy = start_proxy({**proxy_env, "SM_MLFLOW_ENDPOINT_URL": url})
    status, body = get(proxy)
    assert status == 502 and b"CERTIFICATE_VERIFY_FAILED" in body
    assert ports == []
