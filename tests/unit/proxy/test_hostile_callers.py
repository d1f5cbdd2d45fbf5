"""Callers that cut their requests short, stall, or send what is not HTTP, against the proxy under
the gunicorn we ship (a small pool: 1 worker x 4 connections), with S3 (moto) behind the artifact API.

The raw socket clients here send exactly the bytes a test names, then half-close (the answer can
still be read) or close (the caller is gone).
"""

import json
import re
import socket
import threading
import time
import uuid
from typing import Optional
from urllib.parse import urlsplit

import pytest
import requests

from proxy_support import (
    READER,
    READER_TOKEN,
    TOKENS_JSON,
    TRACKING_ARN,
    WRITER,
    WRITER_TOKEN,
    FakeUpstream,
    Gunicorn,
    gunicorn_environment,
    s3_client,
    serve_in_thread,
)

pytestmark = pytest.mark.slow

CONNECTIONS = 4
# Short, so the tests wait little; the proxy ships with 10 s and 30 s.
DEADLINE_SECONDS = 2
# Far longer than any deadline: a call that needs it has found a stuck proxy.
PATIENCE_SECONDS = 30
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
CREATE = "/api/2.0/mlflow/experiments/create"
SECRET_BYTES = b"BODY-BYTES-NEVER-LOGGED"


class Proxy:
    def __init__(self, server: Gunicorn, upstream: FakeUpstream, s3, bucket: str):
        self.server, self.upstream, self.s3, self.bucket = server, upstream, s3, bucket
        self.url = server.url()
        parts = urlsplit(self.url)
        self.address = (parts.hostname, parts.port)

    def log(self) -> str:
        return "".join(self.server.lines)

    def access_entry(self, path: str, status: Optional[int] = None) -> dict:
        """The next access-log entry for `path` (with `status`), waiting for it to be written."""
        keys = re.escape(f'"path": {json.dumps(path)}, "status": {"" if status is None else status}')
        line = self.server.wait_for_line(r"^(\{.*" + keys + r".*\})$")
        assert line, self.log()
        return json.loads(line[1])

    def wait_until_logged(self, unique_path: str) -> str:
        """The next log line naming `unique_path` (only the access line does): the proxy is
        done with the request."""
        line = self.server.wait_for_line(r"^(.*" + re.escape(unique_path) + r".*)$")
        assert line, self.log()
        return line[1]

    def stored(self, path: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=f"store/{path}")["Body"].read()


@pytest.fixture(scope="module")
def proxy(s3_endpoint):
    s3 = s3_client(s3_endpoint)
    bucket = f"artifacts-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    upstream = FakeUpstream()
    upstream.url, stop_upstream = serve_in_thread(upstream)
    server = Gunicorn(
        gunicorn_environment(
            SM_MLFLOW_RESOURCE_ARN=TRACKING_ARN,
            SM_MLFLOW_ENDPOINT_URL=upstream.url,
            MLFLOW_PROXY_TOKENS=TOKENS_JSON,
            MLFLOW_PROXY_ARTIFACT_STORE_URI=f"s3://{bucket}/store",
            AWS_ENDPOINT_URL_S3=s3_endpoint,
            MLFLOW_PROXY_HEADER_TIMEOUT_SECONDS=str(DEADLINE_SECONDS),
            MLFLOW_PROXY_BODY_READ_TIMEOUT_SECONDS=str(DEADLINE_SECONDS),
        ),
        "--worker-connections",
        str(CONNECTIONS),
    )
    try:
        yield Proxy(server, upstream, s3, bucket)
    finally:
        server.stop()
        stop_upstream()


def request_head(method: str, path: str, headers: dict) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: proxy", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send(proxy: Proxy, data: bytes, *, hang_up: str = "half-close"):
    """Send `data`, then half-close and read the answer, or close and return None."""
    with socket.create_connection(proxy.address, timeout=PATIENCE_SECONDS) as connection:
        connection.sendall(data)
        if hang_up == "close":
            return None
        connection.shutdown(socket.SHUT_WR)
        return read_answer(connection)


def read_answer(connection: socket.socket):
    """(status, headers, body) of the one answer on the connection."""
    data = b""
    while True:
        more = connection.recv(65536)
        if not more:
            break
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (h.split(":", 1) for h in header_lines)}
    return int(status_line.split()[1]), headers, body


def assert_mlflow_error(answer, status: int, error_code: str):
    got_status, headers, body = answer
    assert (got_status, headers.get("content-type")) == (status, "application/json"), answer
    assert json.loads(body)["error_code"] == error_code


def put_good_artifact(proxy: Proxy, path: str) -> bytes:
    good = b"good " * 1000
    requests.put(proxy.url + ARTIFACTS + "/" + path, data=good, headers=WRITER).raise_for_status()
    proxy.wait_until_logged(path)  # so that the next line naming it is another request's
    return good


# -- 1. complete or refused --------------------------------------------------------------------


def test_a_forwarded_body_cut_short_is_400_and_never_forwarded(proxy):
    body = json.dumps({"name": f"cut-{uuid.uuid4().hex}"}).encode()
    head = request_head(
        "POST",
        CREATE,
        {**WRITER, "Content-Type": "application/json", "Content-Length": len(body) + 50},
    )
    answer = send(proxy, head + body)
    assert all(body not in sent.body for sent in proxy.upstream.requests)
    assert_mlflow_error(answer, 400, "MALFORMED_REQUEST")
    logged = proxy.access_entry(CREATE, 400)
    assert logged["bytes_in"] == len(body)
    assert logged["error"].startswith("MALFORMED_REQUEST: ")


@pytest.mark.parametrize(
    "declared, sent",
    # within the first part; past it, when the streamed PutObject has begun
    [(100_000, 7), (20 * 1024 * 1024, 9 * 1024 * 1024)],
    ids=["put", "streamed put"],
)
@pytest.mark.parametrize("hang_up", ["half-close", "close"])
def test_an_upload_cut_short_leaves_the_old_artifact(proxy, declared, sent, hang_up):
    path = f"0/{uuid.uuid4().hex}/model.bin"
    good = put_good_artifact(proxy, path)
    head = request_head("PUT", ARTIFACTS + "/" + path, {**WRITER, "Content-Length": declared})
    answer = send(proxy, head + b"x" * sent, hang_up=hang_up)
    logged = proxy.wait_until_logged(path)
    assert proxy.stored(path) == good
    if answer is not None:
        assert_mlflow_error(answer, 400, "MALFORMED_REQUEST")
    logged = json.loads(logged)
    assert (logged["method"], logged["status"], logged["bytes_in"]) == ("PUT", 400, sent)
    assert logged["error"].startswith("MALFORMED_REQUEST: ")
    uploads = proxy.s3.list_multipart_uploads(Bucket=proxy.bucket, Prefix=f"store/{path}")
    assert uploads.get("Uploads", []) == []  # aborted, not left to cost


MIB = 1024 * 1024
# More than a part (artifact_store.PART_BYTES): the upload to S3 has begun when the body goes
# wrong (one streamed PutObject for a body of known length, a multipart upload for a chunked one).
PAST_A_PART = b"x" * (9 * MIB)


@pytest.mark.parametrize(
    "headers, body, status, error_code",
    [
        ({"Content-Length": 20 * MIB}, PAST_A_PART, 408, "DEADLINE_EXCEEDED"),
        (
            {"Transfer-Encoding": "chunked"},
            b"%x\r\n%s\r\n" % (len(PAST_A_PART), PAST_A_PART) + SECRET_BYTES + b"\r\n",
            400,
            "MALFORMED_REQUEST",
        ),
    ],
    ids=["stalled", "bad chunk"],
)
def test_an_upload_that_goes_wrong_after_a_part_leaves_the_old_artifact(
    proxy, headers, body, status, error_code
):
    path = f"0/{uuid.uuid4().hex}/model.bin"
    good = put_good_artifact(proxy, path)
    head = request_head("PUT", ARTIFACTS + "/" + path, {**WRITER, **headers})
    with socket.create_connection(proxy.address, timeout=PATIENCE_SECONDS) as connection:
        connection.sendall(head + body)  # then nothing more, the connection kept open
        assert_mlflow_error(read_answer(connection), status, error_code)
    assert proxy.stored(path) == good
    uploads = proxy.s3.list_multipart_uploads(Bucket=proxy.bucket, Prefix=f"store/{path}")
    assert uploads.get("Uploads", []) == []
    assert SECRET_BYTES.decode() not in proxy.log()


def test_completing_a_multipart_upload_with_a_cut_body_is_refused(proxy):
    directory = f"0/{uuid.uuid4().hex}"
    good = put_good_artifact(proxy, directory + "/model.bin")
    created = requests.post(
        proxy.url + "/api/2.0/mlflow-artifacts/mpu/create/" + directory,
        json={"path": "model.bin", "num_parts": 1},
        headers=WRITER,
    ).json()
    part = requests.put(created["credentials"][0]["url"], data=b"new " * 2000)
    part.raise_for_status()
    complete = json.dumps(
        {
            "path": "model.bin",
            "upload_id": created["upload_id"],
            "parts": [{"part_number": 1, "etag": part.headers["ETag"]}],
        }
    ).encode()
    # A whole JSON document, but not the whole body its Content-Length announced.
    path = "/api/2.0/mlflow-artifacts/mpu/complete/" + directory
    head = request_head("POST", path, {**WRITER, "Content-Length": len(complete) + 20})
    assert_mlflow_error(send(proxy, head + complete), 400, "MALFORMED_REQUEST")
    assert proxy.stored(directory + "/model.bin") == good


# -- 3. malformed requests ---------------------------------------------------------------------

BAD_CHUNKED_BODIES = {
    "bad chunk size": SECRET_BYTES + b"\r\nabc\r\n0\r\n\r\n",
    "bad terminator": b"%x\r\n%sXY0\r\n\r\n" % (len(SECRET_BYTES), SECRET_BYTES),
    "hang-up mid-chunk": b"100\r\n" + SECRET_BYTES,
    "hang-up before the last chunk": b"%x\r\n%s\r\n" % (len(SECRET_BYTES), SECRET_BYTES),
}


@pytest.mark.parametrize("body", BAD_CHUNKED_BODIES.values(), ids=BAD_CHUNKED_BODIES.keys())
@pytest.mark.parametrize("target", ["forwarded", "artifact"])
def test_a_malformed_chunked_body_is_400_json_and_reaches_no_log(proxy, body, target):
    if target == "forwarded":
        method, path = "POST", CREATE
    else:
        method, path = "PUT", f"{ARTIFACTS}/0/{uuid.uuid4().hex}/model.bin"
        good = put_good_artifact(proxy, path[len(ARTIFACTS) + 1 :])
    head = request_head(method, path, {**WRITER, "Transfer-Encoding": "chunked"})
    assert_mlflow_error(send(proxy, head + body), 400, "MALFORMED_REQUEST")
    assert proxy.access_entry(path, 400)["error"].startswith("MALFORMED_REQUEST: ")
    assert all(SECRET_BYTES not in sent.body for sent in proxy.upstream.requests)
    if target == "artifact":
        assert proxy.stored(path[len(ARTIFACTS) + 1 :]) == good
    assert "Traceback" not in proxy.log()
    assert SECRET_BYTES.decode() not in proxy.log()


def test_a_malformed_body_nobody_read_reaches_no_log(proxy):
    """Refused before its body is read (no token): gunicorn drains the body afterwards, and
    its error about the bad chunk must neither be logged with the bytes nor answered twice."""
    head = request_head("POST", CREATE, {"Transfer-Encoding": "chunked"})
    status, _, body = send(proxy, head + BAD_CHUNKED_BODIES["bad chunk size"])
    assert (status, json.loads(body)["error_code"]) == (401, "UNAUTHENTICATED")
    proxy.access_entry(CREATE, 401)
    assert SECRET_BYTES.decode() not in proxy.log()


BAD_HEADS = {
    "obs-fold": b"GET /health HTTP/1.1\r\nHost: p\r\nX-A: a\r\n " + SECRET_BYTES + b"\r\n\r\n",
    "line without a colon": b"GET /health HTTP/1.1\r\nHost: p\r\nAuthorization Bearer "
    + SECRET_BYTES
    + b"\r\n\r\n",
    "bad header name": b"GET /health HTTP/1.1\r\nHost: p\r\n" + SECRET_BYTES + b" x: y\r\n\r\n",
    "control character": b"GET /health HTTP/1.1\r\nHost: p\r\nX-A: " + SECRET_BYTES + b"\x01\r\n\r\n",
    "bad content-length": b"POST /health HTTP/1.1\r\nHost: p\r\nContent-Length: 1x\r\n\r\n",
    "content-length and chunked": b"POST /health HTTP/1.1\r\nHost: p\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad request line": SECRET_BYTES + b"\r\n\r\n",
    "bare LF": b"GET /health HTTP/1.1\nHost: p\n\n",
}


@pytest.mark.parametrize("raw", BAD_HEADS.values(), ids=BAD_HEADS.keys())
def test_a_malformed_head_is_400_json_and_reaches_no_log(proxy, raw):
    assert_mlflow_error(send(proxy, raw), 400, "MALFORMED_REQUEST")
    assert "Traceback" not in proxy.log()
    assert SECRET_BYTES.decode() not in proxy.log()


# -- 2. deadlines: stalled callers cannot hold the connections /health needs -------------------------


def health_answers(proxy: Proxy) -> dict:
    return requests.get(proxy.url + "/health", timeout=PATIENCE_SECONDS).json()


def stall(proxy: Proxy, data: bytes, count: int) -> list:
    """`count` connections that send `data` and then nothing, kept open."""
    connections = []
    for _ in range(count):
        connection = socket.create_connection(proxy.address, timeout=PATIENCE_SECONDS)
        connection.sendall(data)
        connections.append(connection)
    return connections


@pytest.mark.parametrize(
    "stalled",
    [
        # A caller with a (read-only) token that announces a body and sends none of it.
        request_head("POST", "/api/2.0/mlflow/experiments/search", {**READER, "Content-Length": 100}),
        # Half the headers, no token: what reaches gunicorn directly.
        b"GET /health HTTP/1.1\r\nHost: proxy\r\nX-Half: ",
    ],
    ids=["body", "headers"],
)
def test_stalled_callers_get_408_and_health_keeps_answering(proxy, stalled):
    connections = stall(proxy, stalled, CONNECTIONS + 2)
    try:
        assert health_answers(proxy) == {"status": "ok"}
        for connection in connections:
            assert_mlflow_error(read_answer(connection), 408, "DEADLINE_EXCEEDED")
    finally:
        for connection in connections:
            connection.close()
    assert READER_TOKEN not in proxy.log() and WRITER_TOKEN not in proxy.log()


def test_the_header_deadline_is_a_total_not_per_byte(proxy):
    """A byte every so often never trips a per-read timeout; the head still has to be done in
    time."""
    head = b"GET /health HTTP/1.1\r\nHost: proxy\r\nX-Slow: " + b"s" * 40 + b"\r\n\r\n"
    pause = DEADLINE_SECONDS / 4
    with socket.create_connection(proxy.address, timeout=PATIENCE_SECONDS) as connection:
        answers = []

        def read():
            answers.append(read_answer(connection))

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for byte in head:
                connection.sendall(bytes([byte]))
                time.sleep(pause)
                if answers:
                    break
        except OSError:
            pass  # answered and closed
        reader.join(PATIENCE_SECONDS)
    assert_mlflow_error(answers[0], 408, "DEADLINE_EXCEEDED")
