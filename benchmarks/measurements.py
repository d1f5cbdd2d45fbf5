"""What `make bench` measures, each as rows of the one table it prints."""

from dataclasses import dataclass
from typing import Optional

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from benchmarks.fast_upstream import BIG_ARTIFACT_BYTES, BIG_ARTIFACT_PATH, SMALL_CALL_PATH
from benchmarks.load import Call, percentile, sequential_latencies, throughput
from benchmarks.proc import PeakResidentMemory, cpu_seconds, process_tree
from local import fixed_credentials
from local.sagemaker_emulator import MODES
from local.stand_in import StandIn

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


def added_latency(stand_in: StandIn, calls: int, proxied: ProxiedRequests) -> list:
    """p50 and p99 of sequential small calls: MLflow, the stand-in, and the proxy in front."""
    paths = {
        "mlflow server, direct": Call(stand_in.mlflow_url, SMALL_CALL_PATH),
        "SageMaker stand-in, direct (SigV4)": signed_call(stand_in),
        "through the proxy": proxied_call(stand_in),
    }
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
    added_p50, added_p99 = (
        through - direct
        for through, direct in zip(
            quantiles["through the proxy"], quantiles["SageMaker stand-in, direct (SigV4)"]
        )
    )
    rows.append(
        Row(
            "latency added by the proxy",
            "through the proxy minus stand-in direct",
            f"p50 {_ms(added_p50)} ms, p99 {_ms(added_p99)} ms",
            "<= 1 ms at p50",
            added_p50 <= 0.001,
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


def artifact_memory(stand_in) -> list:
    """The same for a 1 GiB artifact the proxy itself moves to and from S3 (moto, here)."""
    proxy_pid = stand_in.processes["proxy"].pid
    path = "/api/2.0/mlflow-artifacts/artifacts/benchmarks/one-gib"
    with PeakResidentMemory(proxy_pid) as upload:
        _upload(proxied_call(stand_in, path, method="PUT"), BIG_ARTIFACT_BYTES)
    with PeakResidentMemory(proxy_pid) as download:
        _download(proxied_call(stand_in, path), BIG_ARTIFACT_BYTES)
    return [
        _growth_row("1 GiB artifact uploaded through the proxy to S3", upload),
        _growth_row("1 GiB artifact downloaded through the proxy from S3", download, GIB_TARGET),
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

    connection = call.connect(timeout=600)
    try:
        headers = {**call.headers, "Content-Length": str(size)}
        connection.request(call.method, call.path, body=body(), headers=headers)
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
