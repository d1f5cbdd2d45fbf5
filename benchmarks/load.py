"""The load generator: threads, each with one keep-alive http.client connection.

Cheap per request (no retries, no pool bookkeeping), so that on a 2-core machine most of the CPU
is left to what is measured; it still competes with it, and the results say so.
"""

import http.client
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping, Optional
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Call:
    """One HTTP request, sent again and again: base URL, path with query, headers."""

    base_url: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "GET"

    def connect(self, timeout: float = 60) -> http.client.HTTPConnection:
        parts = urlsplit(self.base_url)
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def send(self, connection: http.client.HTTPConnection) -> int:
        """Send once on `connection`, read the whole answer, return its status."""
        connection.request(self.method, self.path, headers=dict(self.headers))
        response = connection.getresponse()
        response.read()
        return response.status


class UnexpectedStatus(RuntimeError):
    pass


def percentile(samples: list, fraction: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least `fraction` of them at or below."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def sequential_latencies(calls: list, rounds: int, warmup: int) -> list:
    """Seconds each request took, per call: one request at a time, taking the calls in turn.

    Taking turns, rather than one call's series after another's, puts whatever else the machine
    does on all of them alike. Each call keeps one keep-alive connection.
    """
    connections = [call.connect() for call in calls]
    latencies: list = [[] for _ in calls]
    try:
        for round_ in range(warmup + rounds):
            for call, connection, series in zip(calls, connections, latencies):
                started = time.perf_counter()
                status = call.send(connection)
                elapsed = time.perf_counter() - started
                _expect_ok(call, status)
                if round_ >= warmup:
                    series.append(elapsed)
        return latencies
    finally:
        for connection in connections:
            connection.close()


@dataclass(frozen=True)
class Throughput:
    concurrency: int
    requests: int  # answered 200
    errors: int  # any other status, or a failed connection
    seconds: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def throughput(call: Call, concurrency: int, seconds: float) -> Throughput:
    """Requests per second answered 200 by `concurrency` closed-loop clients for `seconds`."""
    counts = [[0, 0] for _ in range(concurrency)]  # [ok, errors] per client: no lock needed
    start = threading.Barrier(concurrency + 1)
    deadline: list = []

    def client(index: int) -> None:
        connection: Optional[http.client.HTTPConnection] = call.connect()
        start.wait()
        while time.monotonic() < deadline[0]:
            try:
                status = call.send(connection)
            except (OSError, http.client.HTTPException):
                status = None
                connection.close()  # the next request reconnects
            counts[index][0 if status == 200 else 1] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    deadline.append(began + seconds)
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    return Throughput(
        concurrency=concurrency,
        requests=sum(ok for ok, _ in counts),
        errors=sum(errors for _, errors in counts),
        seconds=elapsed,
    )


def _expect_ok(call: Call, status: int) -> None:
    if status != 200:
        raise UnexpectedStatus(f"{call.method} {call.base_url}{call.path} answered {status}")
