"""An answer its caller left unread: a small one is read off, so its upstream connection goes back
to the pool (a new TLS handshake to SageMaker for the next call otherwise); a large one closes it."""

import http.server
import threading

import urllib3

from mlflow_proxy.access_log import Exchange
from mlflow_proxy.forwarding import _DRAIN_BYTES, CHUNK_BYTES, _Relay


def client_ports_after_two_abandoned_answers(size: int) -> list:
    """The client port of each request the upstream saw: the same port, the same connection."""
    ports = []

    class KeepAlive(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # werkzeug's test server closes every connection

        def do_GET(self):
            ports.append(self.client_address[1])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(b"x" * size)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pool = urllib3.connection_from_url(f"http://127.0.0.1:{server.server_port}", maxsize=4)
        for _ in range(2):
            answer = pool.urlopen("GET", "/", preload_content=False, retries=False)
            relay = _Relay(answer, Exchange(client="-", method="GET", path="/"), None)
            relay.start()  # the first chunk read, the caller gone before the rest
            relay.close()
    finally:
        server.shutdown()
        server.server_close()
    return ports


def test_a_small_answer_left_unread_keeps_its_connection():
    size = CHUNK_BYTES + _DRAIN_BYTES // 2  # more than the first chunk, within the drain
    first, second = client_ports_after_two_abandoned_answers(size)
    assert first == second


def test_a_large_answer_left_unread_closes_its_connection():
    first, second = client_ports_after_two_abandoned_answers(CHUNK_BYTES + 4 * _DRAIN_BYTES)
    assert first != second
