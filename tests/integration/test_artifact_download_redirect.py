"""MLFLOW_PROXY_ARTIFACT_DOWNLOAD_REDIRECT with the real MLflow clients: the bytes come from S3.

The proxy (under gunicorn, assuming its role through the emulated STS as on the instances) is
reached as 127.0.0.1; it signs S3 URLs for `localhost`, where a recording TCP relay stands in
front of the stand-in's moto S3. So the client follows the redirect to another host, and the
relay keeps every byte sent to S3: what the client sent there, headers and all, is read back
from it. Off by default, downloads stream through the proxy (tests/integration/
test_artifacts_through_proxy.py, tests/unit/proxy/test_artifact_redirect.py).
"""

import json
import os
import re
import socket
import subprocess
import threading
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from local.stand_in import REPO_ROOT, StandIn

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
CLIENT_2 = REPO_ROOT / ".venv-client-2.22.5" / "bin" / "python"
# A request's line and headers, as they arrived at S3.
REQUEST_HEAD = re.compile(rb"(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP/1\.1\r\n(.*?)\r\n\r\n", re.S)


class RecordingRelay:
    """Relays TCP connections on a loopback port to `upstream_port`, keeping every byte sent
    towards the upstream. It changes nothing, so S3 sees exactly what the client sent."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.upstream_port = None
        self._sent: list[bytearray] = []
        self._lock = threading.Lock()

    def start(self):
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self._listener.close()

    def received(self) -> bytes:
        """Everything sent to S3 so far, every connection."""
        with self._lock:
            return b"".join(bytes(sent) for sent in self._sent)

    def requests(self) -> list[dict]:
        """The requests S3 received: method, target and headers (names in lower case)."""
        found = []
        with self._lock:
            connections = [bytes(sent) for sent in self._sent]
        for sent in connections:
            for head in REQUEST_HEAD.finditer(sent):
                headers = {}
                for line in head[3].decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                found.append(
                    {"method": head[1].decode(), "target": head[2].decode(), "headers": headers}
                )
        return found

    def _accept(self):
        while True:
            try:
                caller, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            sent = bytearray()
            with self._lock:
                self._sent.append(sent)
            threading.Thread(target=self._pump, args=(caller, upstream, sent), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, caller, None), daemon=True).start()

    def _pump(self, source, target, record):
        try:
            while chunk := source.recv(65536):
                if record is not None:
                    with self._lock:
                        record += chunk
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture(scope="module")
def relay():
    running = RecordingRelay()
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def stand_in(relay):
    stand_in = StandIn(
        "tracking",
        assume_role=True,
        proxy_env={
            "MLFLOW_PROXY_ARTIFACT_DOWNLOAD_REDIRECT": "true",
            # Another host name than the proxy's 127.0.0.1: the presigned URLs name it.
            "AWS_ENDPOINT_URL_S3": f"http://localhost:{relay.port}",
        },
    )
    relay.upstream_port = stand_in.ports["s3"]
    with stand_in:
        yield stand_in


@pytest.fixture
def mlflow_client_env(stand_in, monkeypatch):
    """The client has the proxy's URL and a token, nothing of AWS."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "MLFLOW_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stand_in.proxy_url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", stand_in.token)
    return monkeypatch


@pytest.fixture(scope="module")
def logged(stand_in, tmp_path_factory):
    """A run with one artifact, logged through the proxy by the MLflow client."""
    source = tmp_path_factory.mktemp("source") / "weights.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", stand_in.proxy_url)
        patch.setenv("MLFLOW_TRACKING_TOKEN", stand_in.token)
        client = MlflowClient()
        experiment = client.create_experiment(f"redirect {uuid.uuid4().hex[:8]}")
        run = client.create_run(experiment)
        client.log_artifact(run.info.run_id, str(source))
    return run.info.run_id, source


def _s3_gets_of(relay, name) -> list[dict]:
    """The GETs S3 received for a presigned URL of the artifact `name`."""
    return [
        request
        for request in relay.requests()
        if request["method"] == "GET"
        and urlsplit(request["target"]).path.endswith("/" + name)
        and "X-Amz-Signature" in parse_qs(urlsplit(request["target"]).query)
    ]


def _access_lines(stand_in) -> list[dict]:
    return [
        json.loads(line)
        for line in stand_in.log_path("proxy").read_text().splitlines()
        if line.startswith('{"client": ')
    ]


def test_the_mlflow_client_follows_the_redirect_to_s3_without_its_token(
    stand_in, relay, logged, mlflow_client_env, tmp_path
):
    run_id, source = logged
    before = len(_s3_gets_of(relay, "weights.bin"))

    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="weights.bin", dst_path=str(tmp_path)
    )

    assert Path(path).read_bytes() == source.read_bytes()
    gets = _s3_gets_of(relay, "weights.bin")[before:]
    assert len(gets) == 1, gets  # the bytes came from S3, once
    sent = gets[0]
    assert sent["headers"]["host"] == f"localhost:{relay.port}"
    assert sent["headers"]["user-agent"] == f"mlflow-python-client/{mlflow.__version__}"
    assert "authorization" not in sent["headers"], sent["headers"]
    # Signed with the assumed role's temporary credentials, which the URL carries.
    query = parse_qs(urlsplit(sent["target"]).query)
    assert query["X-Amz-Security-Token"] and query["X-Amz-Expires"] == ["60"]
    # The proxy's own call to S3 (its HeadObject) is signed in the header: the relay would
    # have shown an Authorization header on the client's GET too.
    heads = [r for r in relay.requests() if r["method"] == "HEAD"]
    assert heads
    assert all(r["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 ") for r in heads)
    # Nothing S3 received, from anyone, holds a caller's token.
    for token in (stand_in.token, stand_in.read_only_token):
        assert token.encode() not in relay.received()

    line = [e for e in _access_lines(stand_in) if e["path"].endswith("/weights.bin")][-1]
    assert (line["method"], line["status"], line["bytes_out"], line["caller"]) == (
        "GET",
        307,
        0,
        "demo",
    )
    log = stand_in.log_path("proxy").read_text()
    assert query["X-Amz-Signature"][0] not in log
    assert query["X-Amz-Security-Token"][0] not in log
    assert "X-Amz-" not in log


def test_a_read_only_caller_downloads_from_s3(stand_in, relay, logged, mlflow_client_env, tmp_path):
    run_id, source = logged
    mlflow_client_env.setenv("MLFLOW_TRACKING_TOKEN", stand_in.read_only_token)
    before = len(_s3_gets_of(relay, "weights.bin"))

    path = MlflowClient().download_artifacts(run_id, "weights.bin", str(tmp_path))

    assert Path(path).read_bytes() == source.read_bytes()
    assert len(_s3_gets_of(relay, "weights.bin")) == before + 1
    line = [e for e in _access_lines(stand_in) if e["path"].endswith("/weights.bin")][-1]
    assert (line["caller"], line["status"]) == ("dashboards", 307)


def test_an_mlflow_2_client_follows_it_too(stand_in, relay, logged, tmp_path):
    if not CLIENT_2.exists():
        pytest.skip(f"{CLIENT_2} is missing: run `make clients`")
    run_id, source = logged
    before = len(_s3_gets_of(relay, "weights.bin"))
    script = (
        "import sys, mlflow; print(mlflow.__version__); "
        "print(mlflow.artifacts.download_artifacts(run_id=sys.argv[1], "
        "artifact_path='weights.bin', dst_path=sys.argv[2]))"
    )
    finished = subprocess.run(
        [str(CLIENT_2), "-c", script, run_id, str(tmp_path)],
        env={**stand_in.client_environment(), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    version, path = finished.stdout.split()[-2:]
    assert version == "2.22.5"
    assert Path(path).read_bytes() == source.read_bytes()
    gets = _s3_gets_of(relay, "weights.bin")[before:]
    assert len(gets) == 1 and "authorization" not in gets[0]["headers"], gets
    assert gets[0]["headers"]["user-agent"] == "mlflow-python-client/2.22.5"
    assert stand_in.token.encode() not in relay.received()


def test_a_missing_artifact_is_mlflows_404_and_s3_is_not_sent_the_caller(stand_in, relay, logged):
    run_id, _ = logged
    answer = requests.get(
        f"{stand_in.proxy_url}{ARTIFACTS}/missing-{run_id}.bin",
        headers={"Authorization": f"Bearer {stand_in.read_only_token}"},
        allow_redirects=False,
    )
    assert answer.status_code == 404
    assert answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert _s3_gets_of(relay, f"missing-{run_id}.bin") == []
