"""/health as the load balancer sees it while the proxy is busy, and callers that stall.

HealthProbe asks GET /health on a new connection every ~50 ms (a load balancer's health check
opens its own connection), in a thread, while a block runs. SlowCallers opens connections that
send half a request head and then nothing, as a slow or hostile client does, and notes when the
proxy gives up on each (closes it, or answers it with an error).
"""

import http.client
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from benchmarks.load import percentile

PROBE_INTERVAL_SECONDS = 0.05
PROBE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class HealthLatency:
    probes: int
    failures: int  # no 200 within PROBE_TIMEOUT_SECONDS, or a refused/reset connection
    max_seconds: float
    p99_seconds: float

    def describe(self) -> str:
        text = f"{self.max_seconds * 1000:.0f} / {self.p99_seconds * 1000:.0f}"
        return text + (f" ({self.failures} of {self.probes} failed)" if self.failures else "")


def summarize(latencies: list, failures: int) -> Optional[HealthLatency]:
    """Failed probes count at the time they took (up to the probe's timeout)."""
    if not latencies:
        return None
    return HealthLatency(
        probes=len(latencies),
        failures=failures,
        max_seconds=max(latencies),
        p99_seconds=percentile(latencies, 0.99),
    )


class HealthProbe:
    """with HealthProbe(proxy_url) as probe: ...; then probe.result (a HealthLatency)."""

    def __init__(self, base_url: str, interval_seconds: float = PROBE_INTERVAL_SECONDS):
        parts = urlsplit(base_url)
        self._address = (parts.hostname, parts.port)
        self._interval = interval_seconds
        self._latencies: list = []
        self._failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe_until_stopped, daemon=True)

    @property
    def result(self) -> Optional[HealthLatency]:
        return summarize(self._latencies, self._failures)

    def __enter__(self) -> "HealthProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _probe_until_stopped(self) -> None:
        while not self._stop.wait(self._interval):
            started = time.perf_counter()
            ok = self._probe_once()
            self._latencies.append(time.perf_counter() - started)
            self._failures += 0 if ok else 1

    def _probe_once(self) -> bool:
        connection = http.client.HTTPConnection(*self._address, timeout=PROBE_TIMEOUT_SECONDS)
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()


class SlowCallers:
    """`count` connections, each sent the first half of a request head, then left to stall.

        with SlowCallers(proxy_url, 64) as callers:
            callers.wait_until_dropped(limit_seconds)
        callers.dropped, callers.seconds_until_all_dropped
    """

    HALF_A_HEAD = b"GET /api/2.0/mlflow/experiments/get?experiment_id=0 HTTP/1.1\r\nHost: 127"

    def __init__(self, base_url: str, count: int):
        parts = urlsplit(base_url)
        self._address = (parts.hostname, parts.port)
        self.count = count
        self._sockets: list = []
        self._started = 0.0
        self.dropped = 0
        self.seconds_until_all_dropped: Optional[float] = None

    def __enter__(self) -> "SlowCallers":
        self._started = time.monotonic()
        for _ in range(self.count):
            caller = socket.create_connection(self._address, timeout=10)
            caller.sendall(self.HALF_A_HEAD)
            self._sockets.append(caller)
        return self

    def __exit__(self, *exc_info) -> None:
        for caller in self._sockets:
            caller.close()

    def wait_until_dropped(self, limit_seconds: float) -> None:
        """Until the proxy has closed or answered every caller, or `limit_seconds` have passed."""
        waiting = list(self._sockets)
        deadline = self._started + limit_seconds
        while waiting and time.monotonic() < deadline:
            readable, _, _ = select.select(waiting, [], [], max(0.0, deadline - time.monotonic()))
            for caller in readable:
                waiting.remove(caller)
                self.dropped += 1
        if not waiting:
            self.seconds_until_all_dropped = time.monotonic() - self._started
