"""The upstream dies or hangs: callers get MLflow-shaped 502/504 and the proxy carries on."""

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from reliability_support import (
    SHIPPED_GUNICORN,
    call_proxy,
    frozen,
    proxy_workers,
)

from benchmarks.fast_upstream import TrivialUpstreamStandIn
from benchmarks.measured_stand_in import MeasuredStandIn

LOAD_CLIENTS = 8
# Short, so that the test waits little; the proxy ships with 300 s.
READ_TIMEOUT_SECONDS = 2


class LoadInBackground:
    """Clients calling through the proxy in a loop, every outcome kept with its time."""

    def __init__(self, chain, clients: int):
        # (monotonic time the call was made, status, body), or (time, None, exception)
        self.outcomes: list = []
        self._chain = chain
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop) for _ in range(clients)]

    def __enter__(self) -> "LoadInBackground":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            called = time.monotonic()
            try:
                status, body = call_proxy(self._chain)
            except Exception as error:  # noqa: BLE001 - a hang or a cut connection is kept too
                status, body = None, error
            self.outcomes.append((called, status, body))


def is_unavailable_error(body) -> bool:
    return isinstance(body, dict) and body.get("error_code") == "TEMPORARILY_UNAVAILABLE"


def all_answer(chain, calls: int) -> list:
    """Statuses of `calls` concurrent calls."""
    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(lambda _: call_proxy(chain)[0], range(calls)))


@pytest.mark.slow
def test_upstream_killed_mid_load_gets_502_json_and_the_proxy_recovers(stand_in, report):
    workers_before = proxy_workers(stand_in)
    with LoadInBackground(stand_in, LOAD_CLIENTS) as load:
        time.sleep(1)
        stand_in.kill("emulator")
        gap_status, gap_body = call_proxy(stand_in)
        time.sleep(1)
        restarting = time.monotonic()
        stand_in.start("emulator")
        restarted = time.monotonic()
        time.sleep(1)

    assert gap_status == 502
    assert gap_body["error_code"] == "TEMPORARILY_UNAVAILABLE"
    unexpected = [
        outcome
        for outcome in load.outcomes
        if outcome[1] != 200
        and not (outcome[1] == 502 and is_unavailable_error(outcome[2]))
    ]
    assert unexpected == []
    failed_after_restart = [o for o in load.outcomes if o[0] > restarted and o[1] != 200]
    assert failed_after_restart == []
    assert any(o[0] > restarted for o in load.outcomes)
    # Recovered without a restart, and no worker thread is left stuck on the dead upstream.
    assert proxy_workers(stand_in) == workers_before
    # Twice as many calls at once as the workers have connections: connections still held by calls to
    # the dead upstream would leave some of these queued until the client gives up.
    concurrent_calls = 2 * SHIPPED_GUNICORN["workers"] * SHIPPED_GUNICORN["worker_connections"]
    assert all_answer(stand_in, concurrent_calls) == [200] * concurrent_calls

    answered_502 = [o[0] for o in load.outcomes if o[1] == 502]
    report(
        f"upstream killed: {len(load.outcomes)} calls under load, {len(answered_502)} got 502 "
        f"JSON over {max(answered_502) - min(answered_502):.2f} s; the upstream took "
        f"{restarted - restarting:.2f} s to restart, and every call after it got 200"
    )


@pytest.fixture(scope="module")
def impatient_stand_in():
    with MeasuredStandIn(
        "tracking",
        proxy_workers=1,
        proxy_env={"MLFLOW_PROXY_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT_SECONDS)},
    ) as chain:
        yield chain


@pytest.mark.slow
def test_upstream_slower_than_the_read_timeout_gets_504_json(impatient_stand_in, report):
    assert call_proxy(impatient_stand_in)[0] == 200  # the pooled connection exists already
    with frozen(impatient_stand_in, "emulator"):
        asked = time.monotonic()
        # The client would wait far longer than the proxy's timeout: the 504 is the proxy's.
        status, body = call_proxy(impatient_stand_in)
        answered = time.monotonic()

    assert status == 504
    assert body["error_code"] == "DEADLINE_EXCEEDED"
    assert call_proxy(impatient_stand_in)[0] == 200
    report(
        f"frozen upstream: 504 after {answered - asked:.2f} s "
        f"(MLFLOW_PROXY_READ_TIMEOUT_SECONDS={READ_TIMEOUT_SECONDS})"
    )


class UpstreamDyingAfterItsHeaders:
    """An upstream that sends a status and headers, then goes away before the body, as the
    killed emulator does when the kill falls between its two writes (it happens under load, one
    run in twenty or so): this makes that moment happen every time."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "UpstreamDyingAfterItsHeaders":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close() alone does not)
        self._listener.close()
        self._thread.join()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # shut down: the test is over
                return
            with connection:
                connection.recv(64 * 1024)
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n"
                )


@pytest.mark.slow
def test_upstream_dying_before_its_body_gets_502_json():
    with UpstreamDyingAfterItsHeaders() as upstream, TrivialUpstreamStandIn(
        "tracking", proxy_workers=1, proxy_env={"SM_MLFLOW_ENDPOINT_URL": upstream.url}
    ) as chain:
        status, body = call_proxy(chain)
    assert status == 502
    assert is_unavailable_error(body)
