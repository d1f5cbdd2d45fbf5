"""A client that goes away mid-download frees the proxy thread that was serving it."""

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest
from reliability_support import CLIENT_TIMEOUT_SECONDS, SHIPPED_GUNICORN, call_proxy, proxy_workers

from benchmarks.fast_upstream import BIG_ARTIFACT_BYTES, BIG_ARTIFACT_PATH, TrivialUpstreamStandIn

READ_BEFORE_LEAVING = 1024 * 1024


@pytest.fixture(scope="module")
def big_artifact_chain():
    """The proxy in front of an upstream that streams a 1 GiB artifact at loopback speed."""
    with TrivialUpstreamStandIn("tracking", proxy_workers=1) as chain:
        yield chain


def start_download_and_leave(chain) -> None:
    parts = urlsplit(chain.proxy_url)
    connection = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=CLIENT_TIMEOUT_SECONDS
    )
    try:
        connection.request(
            "GET", BIG_ARTIFACT_PATH, headers={"Authorization": f"Bearer {chain.token}"}
        )
        response = connection.getresponse()
        assert response.status == 200
        assert len(response.read(READ_BEFORE_LEAVING)) == READ_BEFORE_LEAVING
    finally:
        connection.close()  # with unread data queued: the proxy sees a reset


@pytest.mark.slow
def test_client_leaving_mid_download_frees_its_worker(big_artifact_chain, report):
    chain = big_artifact_chain
    workers_before = proxy_workers(chain)
    # One worker, and twice as many abandoned downloads as it has connections: were a connection kept
    # by a departed client, the later downloads would find none free and time out.
    downloads = 2 * SHIPPED_GUNICORN["worker_connections"]
    started = time.monotonic()
    for _ in range(downloads):
        start_download_and_leave(chain)
    elapsed = time.monotonic() - started

    assert call_proxy(chain)[0] == 200
    assert proxy_workers(chain) == workers_before
    # Each abandoned exchange was closed and logged, long before its 1 GiB was relayed.
    logged = _logged_bytes_out(chain, BIG_ARTIFACT_PATH, want=downloads)
    assert len(logged) == downloads
    assert all(READ_BEFORE_LEAVING <= sent < BIG_ARTIFACT_BYTES for sent in logged), logged
    report(
        f"client disconnects: {downloads} downloads of 1 GiB abandoned after 1 MiB each in "
        f"{elapsed:.2f} s; the proxy relayed at most {max(logged) / 2**20:.0f} MiB of any"
    )


def _logged_bytes_out(chain, path: str, want: int) -> list:
    """bytes_out of the proxy's access-log entries for `path`; waits briefly for the last ones."""
    deadline = time.monotonic() + CLIENT_TIMEOUT_SECONDS
    while True:
        entries = [
            json.loads(line)
            for line in chain.log_path("proxy").read_text().splitlines()
            if line.startswith("{")  # the access lines: one JSON object each
        ]
        found = [
            entry["bytes_out"]
            for entry in entries
            if entry["path"] == path and entry["status"] == 200
        ]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.1)
