"""The delayed upstream's pure parts (benchmarks/delayed_upstream.py): counting new connections
in nginx's log, its configuration, its certificates. No nginx, wrk or git here."""

import http.server
import ssl
import threading
import urllib.request

import pytest

from benchmarks import delayed_upstream
from benchmarks.delayed_upstream import ConnectionCounts, UpstreamLog, count_connections


def test_a_new_connection_is_a_request_that_was_its_connections_first():
    # Two connections kept alive (1, 2, 3 / 1, 2), one per request (1, 1).
    counts = count_connections(["1\n", "1\n", "2\n", "3\n", "2\n", "1\n", "1\n", "\n"])
    assert counts == ConnectionCounts(requests=7, new_connections=4)
    assert counts.new_per_1000 == pytest.approx(4000 / 7)
    # Connections opened before the window carry on in it: no new one.
    assert count_connections(["17", "18", "4"]).new_per_1000 == 0
    # Not "11" or "10": only a first request is a new connection.
    assert count_connections(["11", "10", "1"]).new_connections == 1
    assert count_connections([]).new_per_1000 == 0


def test_the_log_is_counted_from_the_mark_on(tmp_path, monkeypatch):
    monkeypatch.setattr(delayed_upstream, "LOG_FLUSH_SECONDS", 0)
    path = tmp_path / "access.log"
    log = UpstreamLog(path)
    assert log.mark() == 0  # nginx has not written yet
    path.write_text("1\n2\n")
    mark = log.mark()
    with open(path, "a") as appended:
        appended.write("3\n1\n2\n")
    assert log.counts_since(mark) == ConnectionCounts(requests=3, new_connections=1)


def test_the_configuration_delays_by_query_parameter_and_logs_connection_requests(tmp_path):
    config = delayed_upstream.nginx_config(tmp_path, 4001, 4002, (25, 250))
    assert "load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;" in config
    assert "log_format connection_requests '$connection_requests';" in config
    assert "25 0.025;" in config and "250 0.25;" in config
    assert "listen 127.0.0.1:4001;" in config and "listen 127.0.0.1:4002 ssl;" in config
    assert "echo_sleep $delay;" in config and "echo_exec /__answer;" in config
    assert delayed_upstream.call_path(250).endswith("&delay=250")


def test_the_certificate_is_trusted_through_the_ca_file_for_127_0_0_1(tmp_path):
    ca_file = delayed_upstream.write_certificates(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "upstream-cert.pem", tmp_path / "upstream-key.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{server.server_port}/"
    try:
        trusting = ssl.create_default_context(cafile=ca_file)
        with urllib.request.urlopen(url, context=trusting, timeout=10) as answer:
            assert answer.status == 200
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(url, context=ssl.create_default_context(), timeout=10)
    finally:
        server.shutdown()
        server.server_close()
