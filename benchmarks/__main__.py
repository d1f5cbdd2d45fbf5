"""`make bench`: measure the proxy on loopback and print one table.

    .venv/bin/python -m benchmarks [--mode serverless] [--calls N] [--seconds S]

The table goes to stdout (progress to stderr), so `... > table.md` keeps just the table.

Two set-ups, one after the other, each with the proxy under the gunicorn settings we ship:
1. the local stand-in (mlflow server <- SageMaker emulator <- proxy, role assumed through the
   emulated STS): added latency, throughput ratios, CPU per request, STS calls,
   and the proxy's memory while it moves a 1 GiB artifact to and from S3 (moto);
2. the proxy in front of a trivially fast upstream, with nginx beside it: the proxy's own
   ceiling, and its memory while a 1 GiB response and the largest accepted request are
   forwarded.
"""

import argparse
import datetime
import os
import platform
import runpy
import subprocess
import sys

from benchmarks import measurements
from benchmarks.fast_upstream import NginxUpstreamStandIn
from benchmarks.measured_stand_in import MeasuredStandIn
from local.stand_in import PROXY_APP_DIR, PROXY_PYTHON

LOAD_GENERATOR = (
    "Python threads, one keep-alive http.client connection each, on the same 2 cores as "
    "everything it measures: it competes with the proxy for CPU, more so at high concurrency"
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Measure the proxy on loopback."
    )
    parser.add_argument("--mode", choices=("tracking", "serverless"), default="tracking")
    parser.add_argument("--calls", type=int, default=1000, help="sequential calls for latency")
    parser.add_argument("--seconds", type=float, default=10, help="per throughput measurement")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.seconds <= 0:
        parser.error("--calls and --seconds must be positive")

    started = datetime.datetime.now(datetime.timezone.utc)
    machine = describe_machine()
    rows = []
    proxied = measurements.ProxiedRequests()
    print("Measuring through the local stand-in ...", file=sys.stderr)
    with MeasuredStandIn(args.mode, assume_role=True) as stand_in:
        rows += measurements.added_latency(stand_in, args.calls, proxied)
        rows += measurements.throughput_ratios(stand_in, (1, 8, 32), args.seconds, proxied)
        rows += measurements.sts_calls(stand_in, proxied)
        rows += measurements.artifact_memory(stand_in)
    print("Measuring against a trivially fast upstream ...", file=sys.stderr)
    with NginxUpstreamStandIn(args.mode) as stand_in:
        rows += measurements.ceiling(stand_in, 32, args.seconds, args.calls)
        rows += measurements.peak_memory(stand_in)

    print(render(started, machine, args, rows))
    return 0


def describe_machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    proxy_python = subprocess.run(
        [str(PROXY_PYTHON), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}; proxy on {proxy_python}, "
        f"the rest on Python {platform.python_version()}; load average before the run: {load}"
    )


def shipped_workers() -> str:
    settings = runpy.run_path(str(PROXY_APP_DIR / "gunicorn.conf.py"))
    return (
        f"{settings['workers']} {settings['worker_class']} workers x {settings['threads']} threads"
    )


def render(started, machine: str, args, rows: list) -> str:
    lines = [
        f"### Proxy benchmark, {started:%Y-%m-%d %H:%M} UTC ({args.mode} mode)",
        "",
        f"- Machine: {machine}",
        f"- Load generator: {LOAD_GENERATOR}",
        f"- Proxy: gunicorn with helpers/app/gunicorn.conf.py as shipped: {shipped_workers()}",
        "",
        "| measurement | path | result | target | met |",
        "|---|---|---|---|---|",
    ]
    previous = None
    for row in rows:
        measurement = "" if row.measurement == previous else row.measurement
        previous = row.measurement
        met = {None: "", True: "yes", False: "**no**"}[row.met]
        lines.append(f"| {measurement} | {row.path} | {row.value} | {row.target} | {met} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
