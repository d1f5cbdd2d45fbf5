"""What the proxy refuses before anything reaches SageMaker, and that it loses nothing doing so."""

import json
import re
import socket

import pytest
import requests
from mlflow.exceptions import MlflowException

from tests.integration.conftest import MAX_BODY_BYTES

pytestmark = pytest.mark.slow

SEARCH = "/api/2.0/mlflow/experiments/search"


def post_search(stand_in, headers):
    return requests.post(
        stand_in.proxy_url + SEARCH, json={"max_results": 1}, headers=headers, timeout=60
    )


def assert_mlflow_error(response, status, error_code):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error_code"] == error_code
    assert body["message"]


def test_request_without_a_token_is_401(stand_in):
    assert_mlflow_error(post_search(stand_in, {}), 401, "UNAUTHENTICATED")


def test_request_with_a_wrong_token_is_401(stand_in):
    response = post_search(stand_in, {"Authorization": "Bearer not-a-token"})
    assert_mlflow_error(response, 401, "UNAUTHENTICATED")


def test_mlflow_client_without_a_token_gets_unauthenticated(client_for):
    with pytest.raises(MlflowException) as raised:
        client_for(None).search_experiments()
    assert raised.value.error_code == "UNAUTHENTICATED"


def test_read_only_token_reads_but_may_not_write(client_for, stand_in):
    reader = client_for(stand_in.read_only_token)
    assert any(experiment.name == "Default" for experiment in reader.search_experiments())

    with pytest.raises(MlflowException) as raised:
        reader.create_experiment("written by a read-only caller")
    assert raised.value.error_code == "PERMISSION_DENIED"

    writer = client_for(stand_in.token)
    assert writer.get_experiment_by_name("written by a read-only caller") is None


def test_oversize_body_is_413_and_the_proxy_keeps_serving(stand_in):
    headers = {"Authorization": f"Bearer {stand_in.token}", "Content-Type": "application/json"}
    oversize = json.dumps({"run_id": "r", "params": [], "padding": "x" * MAX_BODY_BYTES}).encode()

    response = requests.post(
        stand_in.proxy_url + "/api/2.0/mlflow/runs/log-batch",
        data=oversize,
        headers=headers,
        timeout=60,
    )

    assert_mlflow_error(response, 413, "RESOURCE_LIMIT_EXCEEDED")
    assert post_search(stand_in, headers).status_code == 200


def read_status_line(sock) -> bytes:
    """Read one whole response off a raw socket; return its status line.

    Framed by Content-Length, or chunked: JSON whose artifact URIs the proxy maps is streamed
    without a length.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if length is None:
        assert re.search(rb"(?im)^transfer-encoding:\s*chunked", head), head

    def complete() -> bool:
        if length is None:
            return body.endswith(b"0\r\n\r\n")  # the last, empty chunk
        return len(body) >= int(length.group(1))

    while not complete():
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head.split(b"\r\n", 1)[0]


def test_request_after_an_early_refusal_on_the_same_connection_is_answered(stand_in):
    # The proxy refuses the write from its headers alone; the body reaches it only afterwards,
    # in the same segment as the client's next request, as it can when the client is slow.
    body = b'{"name": "refused"}'
    refused = (
        "POST /api/2.0/mlflow/experiments/create HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {stand_in.read_only_token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    following = (
        "GET /api/2.0/mlflow/experiments/get?experiment_id=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {stand_in.token}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", stand_in.ports["proxy"]), timeout=10) as sock:
        sock.sendall(refused)
        assert read_status_line(sock).startswith(b"HTTP/1.1 403")
        sock.sendall(body + following)
        try:
            answer = read_status_line(sock)
        except socket.timeout:
            answer = b"(nothing: the request was swallowed)"
    assert answer.startswith(b"HTTP/1.1 200"), answer
