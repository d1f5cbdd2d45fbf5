"""Signed test requests, put on the wire byte for byte.

Test requests are signed with botocore, independently of the verifier under test, and sent with
http.client so that the bytes on the wire are exactly the ones signed.
"""

import http.client
import threading
from contextlib import contextmanager
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from werkzeug.serving import make_server

from local import fixed_credentials

BASE_CREDENTIALS = Credentials(fixed_credentials.ACCESS_KEY_ID, fixed_credentials.SECRET_ACCESS_KEY)


@contextmanager
def serving(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def sign(
    url,
    *,
    method="GET",
    body=b"",
    headers=None,
    service,
    region=fixed_credentials.REGION,
    credentials=BASE_CREDENTIALS,
):
    """A botocore-signed AWSRequest, as the proxy would produce it."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    request.headers["X-Amz-Content-SHA256"] = SigV4Auth(credentials, service, region).payload(
        request
    )
    SigV4Auth(credentials, service, region).add_auth(request)
    return request


def send(request: AWSRequest, *, body=None, extra_headers=None, drop_headers=()):
    """Put a signed request on the wire byte for byte (optionally altered after signing)."""
    parts = urlsplit(request.url)
    headers = {
        name: value for name, value in request.headers.items() if name.lower() not in drop_headers
    }
    headers.update(extra_headers or {})
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        target = parts.path + ("?" + parts.query if parts.query else "")
        connection.request(
            request.method, target, body=request.body if body is None else body, headers=headers
        )
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def signed_for(
    emulator,
    path="/api/2.0/mlflow/experiments/search",
    *,
    method="POST",
    body=b'{"max_results": 1}',
    routing_arn=None,
    service=None,
    **kwargs,
):
    mode = emulator.mode
    headers = {mode.routing_header: routing_arn or mode.resource_arn}
    if body:
        headers["Content-Type"] = "application/json"
    return sign(
        emulator.url + path,
        method=method,
        body=body,
        headers=headers,
        service=service or mode.service,
        **kwargs,
    )
