"""What `make bench` measures: rows of its first table (Row), and the tables after it (Table)."""

import http.client
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials

from benchmarks import wrk
from benchmarks.delayed_upstream import DELAYS_MS, ConnectionCounts, call_path
from benchmarks.fast_upstream import BIG_ARTIFACT_BYTES, BIG_ARTIFACT_PATH, SMALL_CALL_PATH
from benchmarks.health import PROBE_INTERVAL_SECONDS, HealthLatency, HealthProbe, SlowCallers
from benchmarks.measured_stand_in import MeasuredStandIn
from benchmarks.load import Call, percentile, sequential_latencies, throughput
from benchmarks.proc import PeakResidentMemory, cpu_seconds, process_tree
from benchmarks.report import Check, Table, load_average
from local import fixed_credentials
from local.sagemaker_emulator import MODES
from local.stand_in import S3_KEY, StandIn

MIB = 1024 * 1024
# The processes of the local chain, by what they stand for.
CHAIN = {"proxy": "proxy", "SageMaker stand-in": "emulator", "mlflow server": "mlflow"}
# Unmeasured rounds first: mlflow server answers its first few hundred calls slowly.
WARMUP_ROUNDS = 300
# The proxy's default MLFLOW_PROXY_MAX_BODY_BYTES: the largest request it accepts.
LARGEST_REQUEST_BYTES = 100 * MIB
GIB_TARGET = 64 * MIB


@dataclass(frozen=True)
class Row:
    measurement: str
    path: str
    value: str
    target: str = ""
    met: Optional[bool] = None


class ProxiedRequests:
    """Counts what went through the proxy, for STS calls per 10,000 proxied requests."""

    def __init__(self):
        self.count = 0

    def add(self, count: int) -> None:
        self.count += count


def proxied_call(stand_in: StandIn, path: str = SMALL_CALL_PATH, **options) -> Call:
    return Call(stand_in.proxy_url, path, {"Authorization": f"Bearer {stand_in.token}"}, **options)


def signed_call(stand_in: StandIn, path: str = SMALL_CALL_PATH) -> Call:
    """Straight to the emulator, signed as the proxy signs: what a client with AWS keys sends.

    Signed once and replayed (the emulator, like AWS, accepts a signature for 5 minutes), so the
    load generator does the same work for the direct and the proxied rows.
    """
    mode = MODES[stand_in.mode]
    request = AWSRequest(
        method="GET",
        url=stand_in.emulator_url + path,
        headers={mode.routing_header: mode.resource_arn},
    )
    credentials = Credentials(fixed_credentials.ACCESS_KEY_ID, fixed_credentials.SECRET_ACCESS_KEY)
    SigV4Auth(credentials, mode.service, fixed_credentials.REGION).add_auth(request)
    return Call(stand_in.emulator_url, path, dict(request.headers.items()))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def added_latency(stand_in: MeasuredStandIn, calls: int, proxied: ProxiedRequests) -> list:
    """p50 and p99 of sequential small calls: MLflow, the stand-in, and the proxy in front (and
    the baseline's proxy, given one: the target's "today" measured in the same run)."""
    paths = {
        "mlflow server, direct": Call(stand_in.mlflow_url, SMALL_CALL_PATH),
        "SageMaker stand-in, direct (SigV4)": signed_call(stand_in),
        "through the proxy": proxied_call(stand_in),
    }
    baseline = stand_in.baseline
    if baseline:
        headers = {"Authorization": f"Bearer {stand_in.token}"}
        paths[f"through the proxy at {baseline}"] = Call(
            stand_in.baseline_proxy_url, SMALL_CALL_PATH, headers
        )
    series = dict(zip(paths, sequential_latencies(list(paths.values()), calls, WARMUP_ROUNDS)))
    proxied.add(WARMUP_ROUNDS + calls)
    quantiles = {
        name: (percentile(latencies, 0.50), percentile(latencies, 0.99))
        for name, latencies in series.items()
    }
    rows = [
        Row(
            f"latency of GET experiments/get, {calls} sequential calls each",
            name,
            f"p50 {_ms(p50)} ms, p99 {_ms(p99)} ms",
        )
        for name, (p50, p99) in quantiles.items()
    ]
    direct = quantiles["SageMaker stand-in, direct (SigV4)"]
    for name in paths:
        if not name.startswith("through the proxy"):
            continue
        added_p50, added_p99 = (through - alone for through, alone in zip(quantiles[name], direct))
        checkout = name == "through the proxy"
        rows.append(
            Row(
                "latency added by the proxy",
                f"{name} minus stand-in direct",
                f"p50 {_ms(added_p50)} ms, p99 {_ms(added_p99)} ms",
                "<= 1 ms at p50" if checkout else "",
                added_p50 <= 0.001 if checkout else None,
            )
        )
    return rows


def throughput_ratios(
    stand_in: StandIn, concurrencies: tuple, seconds: float, proxied: ProxiedRequests
) -> list:
    """Requests per second, stand-in direct vs through the proxy, at each concurrency.

    Each side runs twice, alternating (direct, proxy, direct, proxy), for half the time each, so
    that a change in what else the machine is doing falls on both. The CPU time each process
    tree used during the proxied runs says where a proxied request's cost goes.
    """
    trees = {name: process_tree(stand_in.processes[part].pid) for name, part in CHAIN.items()}
    cpu_used = dict.fromkeys(trees, 0.0)
    answered = 0
    rows = []
    for concurrency in concurrencies:
        done = {"direct": [], "proxy": []}
        for _ in range(2):
            done["direct"].append(throughput(signed_call(stand_in), concurrency, seconds / 2))
            before = {name: cpu_seconds(pids) for name, pids in trees.items()}
            done["proxy"].append(throughput(proxied_call(stand_in), concurrency, seconds / 2))
            for name, pids in trees.items():
                cpu_used[name] += cpu_seconds(pids) - before[name]
            answered += done["proxy"][-1].requests
        rate = {side: _per_second(results) for side, results in done.items()}
        errors = sum(result.errors for results in done.values() for result in results)
        proxied.add(sum(result.requests + result.errors for result in done["proxy"]))
        ratio = rate["proxy"] / rate["direct"]
        rows.append(
            Row(
                f"throughput of GET experiments/get, concurrency {concurrency}",
                "stand-in direct / through the proxy",
                f"{rate['direct']:.0f} / {rate['proxy']:.0f} req/s = {ratio:.2f}"
                + (f" ({errors} errors)" if errors else ""),
                ">= 0.9 at concurrency 8" if concurrency == 8 else "",
                (ratio >= 0.9 and not errors) if concurrency == 8 else None,
            )
        )
    rows.append(
        Row(
            "CPU time per proxied request (/proc, during the proxied throughput runs)",
            ", ".join(trees),
            ", ".join(f"{_ms(cpu_used[name] / answered)} ms" for name in trees),
        )
    )
    return rows


def _per_second(results: list) -> float:
    return sum(result.requests for result in results) / sum(result.seconds for result in results)


def ceiling(stand_in, concurrency: int, seconds: float, calls: int) -> list:
    """The proxy against a trivially fast upstream, next to nginx on the same upstream."""
    through_proxy = proxied_call(stand_in)
    paths = {
        "trivially fast upstream (nginx), direct": Call(stand_in.emulator_url, SMALL_CALL_PATH),
        "nginx reverse proxy (no signing)": Call(stand_in.nginx_url, SMALL_CALL_PATH),
        "through the proxy": through_proxy,
    }
    series = sequential_latencies(list(paths.values()), calls, WARMUP_ROUNDS)
    proxy_tree = process_tree(stand_in.processes["proxy"].pid)
    rows = []
    for (name, call), latencies in zip(paths.items(), series):
        proxy_cpu_before = cpu_seconds(proxy_tree)
        result = throughput(call, concurrency, seconds)
        value = f"{result.per_second:.0f} req/s; p50 {_ms(percentile(latencies, 0.5))} ms"
        if call is through_proxy:
            proxy_cpu = cpu_seconds(proxy_tree) - proxy_cpu_before
            value += f"; proxy CPU {_ms(proxy_cpu / result.requests)} ms/request"
        if result.errors:
            value += f" ({result.errors} errors)"
        rows.append(
            Row(
                f"ceiling against a trivially fast upstream (concurrency {concurrency}; "
                f"p50 of {calls} sequential calls)",
                name,
                value,
            )
        )
    return rows


def peak_memory(stand_in) -> list:
    """Growth of the proxy's resident memory (master and workers) while big bodies pass."""
    proxy_pid = stand_in.processes["proxy"].pid
    with PeakResidentMemory(proxy_pid) as download:
        _download(proxied_call(stand_in, BIG_ARTIFACT_PATH), BIG_ARTIFACT_BYTES)
    upload = proxied_call(stand_in, "/api/2.0/mlflow-artifacts/artifacts/bench", method="PUT")
    with PeakResidentMemory(proxy_pid) as uploading:
        _upload(upload, LARGEST_REQUEST_BYTES)
    return [
        Row(
            "resident memory of the proxy (all processes)",
            f"at rest, {len(process_tree(proxy_pid))} processes",
            f"{download.baseline_bytes / MIB:.0f} MiB",
        ),
        _growth_row("1 GiB response forwarded from the upstream", download, GIB_TARGET),
        _growth_row(
            f"{LARGEST_REQUEST_BYTES // MIB} MiB request forwarded (the largest accepted)",
            uploading,
        ),
    ]


def _growth_row(what: str, memory: PeakResidentMemory, target: Optional[int] = None) -> Row:
    return Row(
        "peak memory growth of the proxy (all processes)",
        what,
        f"{memory.growth_bytes / MIB:.1f} MiB",
        f"< {target // MIB} MiB" if target else "",
        memory.growth_bytes < target if target else None,
    )


def _download(call: Call, expected_bytes: int) -> None:
    connection = call.connect(timeout=600)
    try:
        connection.request(call.method, call.path, headers=dict(call.headers))
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"download answered {response.status}: {response.read(500)!r}")
        received = 0
        while chunk := response.read(MIB):
            received += len(chunk)
    finally:
        connection.close()
    if received != expected_bytes:
        raise RuntimeError(f"download delivered {received} bytes, not {expected_bytes}")


def _upload(call: Call, size: int) -> None:
    def body():
        block = bytes(MIB)
        for _ in range(size // MIB):
            yield block

    _put(call.connect(timeout=600), call, body(), size)


def _put(connection: http.client.HTTPConnection, call: Call, body, size: int) -> None:
    """Send `body` (`size` bytes) as `call` on `connection`, which it closes; raises unless 200."""
    try:
        headers = {**call.headers, "Content-Length": str(size)}
        connection.request(call.method, call.path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"upload answered {response.status}: {answer[:500]!r}")
    finally:
        connection.close()


def sts_calls(stand_in: StandIn, proxied: ProxiedRequests, at_least: int = 10_000) -> list:
    """AssumeRole calls the emulated STS counted, per 10,000 requests through the proxy."""
    while proxied.count < at_least:  # top up, so that the figure is over a real 10,000
        result = throughput(proxied_call(stand_in), 8, 2)
        proxied.add(result.requests + result.errors)
    # The proxy assumes two roles (read-write and read-only): count the busier one.
    calls = max(stand_in.stats()["assume_role_calls_by_role"].values(), default=0)
    return [
        Row(
            "STS AssumeRole calls per role per 10,000 proxied requests",
            f"{calls} calls over {proxied.count} requests",
            f"{calls * 10_000 / proxied.count:.2f}",
            "1",
            calls <= 1,
        )
    ]


# -- The delayed upstream (benchmarks/delayed_upstream.py), with wrk as the load generator ------

# The targets (issue 12), side by side in one run.
IN_FLIGHT_TARGET = 0.9  # x direct, 250 ms upstream, concurrency 256
BASELINE_SPEEDUP_TARGET = 1.5  # x the baseline's throughput, 25 ms upstream, concurrency 256
BASELINE_CPU_TARGET = 0.7  # x the baseline's CPU per request: 30% below it
NEW_CONNECTIONS_TARGET = 1.0  # per 1,000 proxied requests, at every concurrency
HEALTH_TARGET_SECONDS = 0.1
HEALTH_NOTE = (
    "/health: what the load balancer checks: the port gunicorn's master answers on "
    "(MLFLOW_PROXY_HEALTH_PORT) where the revision has one, else the proxy's own port."
)


@dataclass(frozen=True)
class Upstream:
    delay_ms: int
    tls: bool = False

    def describe(self) -> str:
        return f"{self.delay_ms} ms" + (", HTTPS" if self.tls else "")


@dataclass(frozen=True)
class Side:
    """One path (direct, or a proxy) at one upstream and concurrency, over its two halves."""

    per_second: float
    p50_seconds: float
    p99_seconds: float
    errors: int
    connections: ConnectionCounts
    cpu_ms_per_request: Optional[float] = None  # proxies only
    health: Optional[HealthLatency] = None  # proxies only


def combine(halves: list, **measured) -> Side:
    """Requests per second over both halves; of the latency quantiles, the worse half's."""
    return Side(
        per_second=sum(half.ok for half in halves) / sum(half.seconds for half in halves),
        p50_seconds=max(half.p50_seconds for half in halves),
        p99_seconds=max(half.p99_seconds for half in halves),
        errors=sum(half.errors for half in halves),
        **measured,
    )


def delayed_checks(
    upstream: Upstream, concurrency: int, side: Side, direct: Side, baseline: Optional[Side]
) -> list:
    """The issue's targets for the checkout's proxy at one upstream and concurrency."""
    checks = [
        Check("0 errors", side.errors == 0),
        Check(
            f"<= {NEW_CONNECTIONS_TARGET:g} new conn. / 1000",
            side.connections.new_per_1000 <= NEW_CONNECTIONS_TARGET,
        ),
    ]
    if side.health is not None:
        checks.append(
            Check(
                f"/health <= {HEALTH_TARGET_SECONDS * 1000:.0f} ms",
                side.health.failures == 0 and side.health.max_seconds <= HEALTH_TARGET_SECONDS,
            )
        )
    if upstream == Upstream(250) and concurrency == 256:
        checks.append(
            Check(
                f">= {IN_FLIGHT_TARGET}x direct",
                side.per_second >= IN_FLIGHT_TARGET * direct.per_second,
            )
        )
    if baseline is not None:
        if upstream == Upstream(25) and concurrency == 256:
            checks.append(
                Check(
                    f">= {BASELINE_SPEEDUP_TARGET}x baseline's req/s",
                    side.per_second >= BASELINE_SPEEDUP_TARGET * baseline.per_second,
                )
            )
        if side.cpu_ms_per_request is not None and baseline.cpu_ms_per_request:
            checks.append(
                Check(
                    f"CPU <= {BASELINE_CPU_TARGET}x baseline's",
                    side.cpu_ms_per_request
                    <= BASELINE_CPU_TARGET * baseline.cpu_ms_per_request,
                )
            )
    return checks


def delayed_upstream(stand_in, points: list, seconds: float) -> Table:
    """Direct vs each proxy, at each (Upstream, concurrency) of `points`.

    The paths take turns in two halves of `seconds / 2` each, the second in reverse order
    (direct, proxies..., proxies reversed..., direct), so that a drift in what else the machine
    does falls on all alike. CPU per request: the proxy's process tree over the first half;
    /health is probed during the second.

    New upstream connections are those opened in steady state, not those that first fill the
    pools: before the table each proxy is warmed up at twice the highest concurrency, and before
    each point at that point's concurrency (unmeasured). Twice: each wrk run brings new client
    connections, which the kernel splits between the workers differently each time (135/121 to
    187/69 of 256 seen), and a worker's pool grows to the most calls it has had at once; after
    the warm-up every worker's pool holds as many as one worker can be given.
    """
    baseline = stand_in.baseline and f"proxy at {stand_in.baseline}"
    columns = [
        "upstream", "concurrency", "path", "req/s", "÷ direct", "p50 / p99 ms",
        "proxy CPU ms / req", "new upstream connections / 1000 req", "/health max / p99 ms",
    ]  # fmt: skip
    if baseline:
        columns.append("÷ baseline: req/s, CPU")
    table = Table(
        "Direct vs the proxy in front of an upstream that answers after a delay (wrk)",
        columns + ["target", "met"],
    )
    busiest = max(concurrency for _, concurrency in points)
    for tls in sorted({upstream.tls for upstream, _ in points}):
        for proxy in stand_in.proxies:
            url = stand_in.proxy_part_url(proxy, tls) + call_path(DELAYS_MS[0])
            wrk.run(url, 2 * busiest, 2, {"Authorization": f"Bearer {stand_in.token}"})
    for upstream, concurrency in points:
        sides = _measure_point(stand_in, upstream, concurrency, seconds)
        direct = sides["direct"]
        reference = sides.get("baseline")
        for name, side in sides.items():
            cells = [
                upstream.describe(),
                str(concurrency),
                {"direct": "direct", "checkout": "proxy (checkout)"}.get(name, baseline or ""),
                f"{side.per_second:.0f}" + (f" ({side.errors} errors)" if side.errors else ""),
                "" if name == "direct" else f"{side.per_second / direct.per_second:.2f}",
                f"{_ms(side.p50_seconds)} / {_ms(side.p99_seconds)}",
                "" if side.cpu_ms_per_request is None else f"{side.cpu_ms_per_request:.2f}",
                f"{side.connections.new_per_1000:.1f} ({side.connections.new_connections} of "
                f"{side.connections.requests})",
                side.health.describe() if side.health else "",
            ]
            if baseline:
                cells.append(
                    f"{side.per_second / reference.per_second:.2f}, "
                    f"{side.cpu_ms_per_request / reference.cpu_ms_per_request:.2f}"
                    if name == "checkout" and reference.cpu_ms_per_request
                    else ""
                )
            checks = (
                delayed_checks(upstream, concurrency, side, direct, reference)
                if name == "checkout"
                else ()
            )
            table.add(cells, checks)
    table.notes += [
        "direct: wrk straight to nginx; its new connections are wrk's own, one per connection "
        "per half.",
        "req/s: answered 2xx over both halves; p50 / p99: the worse of the two halves (wrk).",
        "new upstream connections: requests nginx logged with `$connection_requests` = 1, after "
        f"warm-ups at concurrency {2 * busiest} (so that each worker's pool holds as many as "
        "one worker can be given of any split of the callers) and at the row's.",
        HEALTH_NOTE,
    ]
    return table


def _measure_point(stand_in, upstream: Upstream, concurrency: int, seconds: float) -> dict:
    path = call_path(upstream.delay_ms)
    urls = {"direct": stand_in.upstream_url(upstream.tls) + path}
    for proxy in stand_in.proxies:
        urls[proxy] = stand_in.proxy_part_url(proxy, upstream.tls) + path
    # nginx ignores the token; sent on the direct path too, so that wrk does the same work.
    headers = {"Authorization": f"Bearer {stand_in.token}"}
    timeout = 30
    print(
        f"  {upstream.describe()} upstream, concurrency {concurrency} (load {load_average()})",
        file=sys.stderr,
    )
    for proxy in stand_in.proxies:
        wrk.run(urls[proxy], concurrency, max(1, 8 * upstream.delay_ms / 1000), headers, timeout)
    halves = {name: [] for name in urls}
    connections = dict.fromkeys(urls, ConnectionCounts(0, 0))
    cpu_ms = {}
    health = {}
    log = stand_in.upstream_log
    order = list(urls)
    for half, names in enumerate((order, order[::-1])):
        for name in names:
            part = None if name == "direct" else stand_in.part(name, upstream.tls)
            tree = process_tree(stand_in.processes[part].pid) if part else []
            mark = log.mark()
            cpu_before = cpu_seconds(tree)
            probe = (
                HealthProbe(stand_in.load_balancer_check_url(part))
                if part and half == 1
                else nullcontext()
            )
            with probe:
                result = wrk.run(urls[name], concurrency, seconds / 2, headers, timeout)
            if part and half == 0:
                cpu_ms[name] = 1000 * (cpu_seconds(tree) - cpu_before) / max(result.requests, 1)
            if part and half == 1:
                health[name] = probe.result
            counted = log.counts_since(mark)
            connections[name] = ConnectionCounts(
                connections[name].requests + counted.requests,
                connections[name].new_connections + counted.new_connections,
            )
            halves[name].append(result)
    return {
        name: combine(
            halves[name],
            connections=connections[name],
            cpu_ms_per_request=cpu_ms.get(name),
            health=health.get(name),
        )
        for name in urls
    }


def slow_callers(stand_in, count: int, limit_seconds: float) -> Table:
    """/health while `count` callers hold connections with half a request head, until the
    proxy drops them (its header deadline) or `limit_seconds` pass."""
    table = Table(
        f"/health while {count} slow callers hold connections (half a request head each, then "
        "nothing)",
        ["proxy", "slow callers dropped", "all dropped after", "/health max / p99 ms",
         "target", "met"],
    )  # fmt: skip
    for proxy in stand_in.proxies:
        part = stand_in.part(proxy, False)
        print(f"  {count} slow callers on the {proxy} proxy", file=sys.stderr)
        with HealthProbe(stand_in.load_balancer_check_url(part)) as probe:
            time.sleep(1)  # a few probes with no slow caller yet
            with SlowCallers(stand_in.url(part), count) as callers:
                callers.wait_until_dropped(limit_seconds)
            time.sleep(1)  # and the probes right after
        health = probe.result
        dropped_after = callers.seconds_until_all_dropped
        table.add(
            [
                "checkout" if proxy == "checkout" else f"at {stand_in.baseline}",
                f"{callers.dropped} of {count}",
                "not within %.0f s" % limit_seconds
                if dropped_after is None
                else f"{dropped_after:.1f} s",
                health.describe(),
            ],
            [
                Check(
                    f"/health <= {HEALTH_TARGET_SECONDS * 1000:.0f} ms",
                    health.failures == 0 and health.max_seconds <= HEALTH_TARGET_SECONDS,
                )
            ]
            if proxy == "checkout"
            else (),
        )
    table.notes.append(
        f"/health: a new connection every {PROBE_INTERVAL_SECONDS * 1000:.0f} ms, from 1 s before "
        "the slow callers connect until 1 s after the last is dropped."
    )
    table.notes.append(HEALTH_NOTE)
    return table


# -- Artifact transfers: through the proxy vs the same S3 directly ------------------------------

UPLOAD_TARGET = 0.8  # x a direct put_object
ARTIFACT_PATH = "benchmarks/through-the-proxy"


def artifact_throughput(stand_in: StandIn, size_bytes: int) -> Table:
    """An artifact of `size_bytes` uploaded and downloaded through the proxy's artifact API, and
    the same bytes put and got straight from the stand-in's S3 with botocore (one put_object, one
    get_object), taking turns in two rounds (direct, proxy, then proxy, direct). The proxy's
    memory growth is sampled during its transfers."""
    source = stand_in.workdir / "artifact.bin"
    block = os.urandom(MIB)
    with open(source, "wb") as artifact:
        for _ in range(size_bytes // MIB):
            artifact.write(block)
    size_bytes = size_bytes // MIB * MIB
    s3 = boto3.client(
        "s3",
        endpoint_url=stand_in.s3_url,
        region_name=fixed_credentials.REGION,
        aws_access_key_id=S3_KEY["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_KEY["AWS_SECRET_ACCESS_KEY"],
        # As the proxy's own S3 client: SigV4, checksums only where S3 requires them, bodies not
        # hashed into the signature.
        config=BotoConfig(
            signature_version="s3v4",
            request_checksum_calculation="when_required",
            s3={"payload_signing_enabled": False},
        ),
    )
    bucket, _, prefix = stand_in.artifact_store_uri.removeprefix("s3://").partition("/")
    direct_key = f"{prefix}/benchmarks/direct"
    proxied_path = f"/api/2.0/mlflow-artifacts/artifacts/{ARTIFACT_PATH}"
    proxy_pid = stand_in.processes["proxy"].pid

    def put_direct():
        with open(source, "rb") as body:
            s3.put_object(Bucket=bucket, Key=direct_key, Body=body)

    def get_direct():
        body = s3.get_object(Bucket=bucket, Key=direct_key)["Body"]
        received = 0
        while chunk := body.read(MIB):
            received += len(chunk)
        if received != size_bytes:
            raise RuntimeError(f"get_object delivered {received} bytes, not {size_bytes}")

    def put_proxied():
        _upload_file(proxied_call(stand_in, proxied_path, method="PUT"), source, size_bytes)

    def get_proxied():
        _download(proxied_call(stand_in, proxied_path), size_bytes)

    table = Table(
        f"Artifact transfers of {size_bytes // MIB} MiB: through the proxy vs straight to the "
        "same S3 (moto)",
        ["transfer", "direct MiB/s", "through the proxy MiB/s", "proxy ÷ direct",
         "proxy memory growth (peak)", "target", "met"],
    )  # fmt: skip
    for what, direct, proxied in (
        ("upload (PUT artifacts/...; direct: one put_object)", put_direct, put_proxied),
        ("download (GET artifacts/...; direct: one get_object)", get_direct, get_proxied),
    ):
        seconds = {"direct": 0.0, "proxy": 0.0}
        growth = 0
        for round_ in range(2):
            for side in ("direct", "proxy") if round_ == 0 else ("proxy", "direct"):
                print(f"  {what.split(' ')[0]}, {side}", file=sys.stderr)
                with PeakResidentMemory(proxy_pid) as memory:
                    started = time.perf_counter()
                    (direct if side == "direct" else proxied)()
                    seconds[side] += time.perf_counter() - started
                if side == "proxy":
                    growth = max(growth, memory.growth_bytes)
        rate = {side: 2 * size_bytes / MIB / spent for side, spent in seconds.items()}
        proxy_ratio = rate["proxy"] / rate["direct"]
        checks = []
        if what.startswith("upload"):
            checks.append(Check(f">= {UPLOAD_TARGET}x direct", proxy_ratio >= UPLOAD_TARGET))
        else:
            checks.append(Check(f"growth < {GIB_TARGET // MIB} MiB", growth < GIB_TARGET))
        table.add(
            [
                what,
                f"{rate['direct']:.0f}",
                f"{rate['proxy']:.0f}",
                f"{proxy_ratio:.2f}",
                f"{growth / MIB:.1f} MiB",
            ],
            checks,
        )
    return table


def _upload_file(call: Call, path, size: int) -> None:
    parts = urlsplit(call.base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600, blocksize=MIB)
    with open(path, "rb") as body:
        _put(connection, call, body, size)
