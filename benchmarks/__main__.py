"""`make bench`: measure the proxy on loopback and print markdown tables.

    .venv/bin/python -m benchmarks [--mode serverless] [--calls N] [--seconds S]
        [--concurrency 8,64,256] [--tls-concurrency 64,256] [--compare-with REV]
        [--slow-callers N] [--artifact-mib N] [--only PART,...]

The tables go to stdout (progress to stderr), so `... > tables.md` keeps just the tables. Each
table says the machine's load average before and after it was measured.

Parts (--only picks some, for a short trial; the default is all of them: on a quiet 2-core
machine about 7-11 minutes, 9-13 with --compare-with, of which the delayed table takes 3 or 5):
- stand-in: the local stand-in (mlflow server <- SageMaker emulator <- proxy, role assumed
  through the emulated STS): added latency, throughput ratios, CPU per request, STS calls;
- artifacts: in the same stand-in, an artifact of --artifact-mib uploaded and downloaded through
  the proxy vs put_object/get_object straight to the same S3 (moto), and the proxy's memory;
- ceiling: the proxy in front of a trivially fast upstream, with nginx beside it: the proxy's
  own ceiling, and its memory while a 1 GiB response and the largest accepted request pass;
- delayed: direct vs the proxy (and the --compare-with revision's proxy) with wrk, in front of
  nginx answering after 25 and 250 ms at each --concurrency, and over HTTPS after 25 ms at each
  --tls-concurrency: req/s, p50/p99, the proxy's CPU per request, new upstream connections
  counted at the upstream, /health latency during the proxied runs;
- slow-callers: /health while --slow-callers connections stall half-way through a request head.

--seconds is the time per path and measurement, split in two alternating halves. wrk counts
whole seconds: 2 is the shortest meaningful trial (two 1 s halves).
"""

import argparse
import datetime
import json
import os
import platform
import runpy
import subprocess
import sys
from pathlib import Path

from benchmarks import measurements, wrk
from benchmarks.baseline import short_revision
from benchmarks.delayed_upstream import DELAYS_MS, DelayedUpstreamStandIn
from benchmarks.fast_upstream import NginxMissing, NginxUpstreamStandIn
from benchmarks.measured_stand_in import MeasuredStandIn
from benchmarks.measurements import MIB
from benchmarks.report import Table, load_average
from local.stand_in import PROXY_APP_DIR, PROXY_PYTHON

PARTS = ("stand-in", "artifacts", "ceiling", "delayed", "slow-callers")
PYTHON_LOAD_GENERATOR = (
    "Python threads, one keep-alive http.client connection each, on the same 2 cores as "
    "everything it measures: it competes with the proxy for CPU, more so at high concurrency"
)
WRK_LOAD_GENERATOR = "wrk (2 threads, one keep-alive connection per concurrent caller)"
# The proxy drops a caller whose request head is not in after its header deadline (10 s by
# default, MLFLOW_PROXY_HEADER_TIMEOUT_SECONDS): wait for two rounds of that and a margin, since
# callers queued behind busy threads may get their deadline only when a thread takes them.
SLOW_CALLER_LIMIT_SECONDS = 30


def _numbers(text: str) -> tuple:
    try:
        values = tuple(int(value) for value in text.split(",") if value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _parts(text: str) -> tuple:
    chosen = tuple(part for part in text.split(",") if part)
    unknown = set(chosen) - set(PARTS)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"parts are {', '.join(PARTS)}; got {text!r}")
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Measure the proxy on loopback."
    )
    parser.add_argument("--mode", choices=("tracking", "serverless"), default="tracking")
    parser.add_argument("--calls", type=int, default=1000, help="sequential calls for latency")
    parser.add_argument(
        "--seconds", type=float, default=10, help="per path and throughput measurement"
    )
    parser.add_argument(
        "--concurrency", type=_numbers, default=(8, 64, 256), help="delayed upstream: callers"
    )
    parser.add_argument(
        "--tls-concurrency", type=_numbers, default=(64, 256), help="HTTPS upstream: callers"
    )
    parser.add_argument(
        "--compare-with",
        metavar="REV",
        help="also measure this git revision's proxy (helpers/app) on the delayed upstream",
    )
    parser.add_argument("--slow-callers", type=int, default=64, help="stalled connections")
    parser.add_argument("--artifact-mib", type=int, default=512, help="artifact size")
    parser.add_argument("--only", type=_parts, default=PARTS, help=",".join(PARTS))
    args = parser.parse_args(argv)
    if args.calls < 1 or args.seconds <= 0 or args.slow_callers < 1 or args.artifact_mib < 8:
        parser.error("--calls, --seconds, --slow-callers must be positive, --artifact-mib >= 8")
    try:
        baseline = short_revision(args.compare_with) if args.compare_with else None
    except subprocess.CalledProcessError as error:
        parser.error(f"--compare-with {args.compare_with}: {error.stderr.strip()}")

    if {"delayed", "slow-callers"} & set(args.only):
        try:  # before minutes of the other parts
            wrk.find_wrk()
            DelayedUpstreamStandIn.check_installed()
        except (wrk.WrkMissing, NginxMissing) as missing:
            parser.error(str(missing))

    started = datetime.datetime.now(datetime.timezone.utc)
    machine = describe_machine()
    tables = []
    baseline_workers = None
    if {"stand-in", "artifacts"} & set(args.only):
        print("Measuring through the local stand-in ...", file=sys.stderr)
        # The baseline's proxy runs beside the checkout's for the added latency only.
        stand_in_baseline = baseline if "stand-in" in args.only else None
        with MeasuredStandIn(args.mode, assume_role=True, baseline=stand_in_baseline) as stand_in:
            if stand_in_baseline:
                baseline_workers = shipped_workers(stand_in.baseline_app_dir())
            if "stand-in" in args.only:
                tables.append(measured(stand_in_rows, stand_in, args))
            if "artifacts" in args.only:
                print("Artifact transfers ...", file=sys.stderr)
                tables.append(
                    measured(measurements.artifact_throughput, stand_in, args.artifact_mib * MIB)
                )
    if "ceiling" in args.only:
        print("Measuring against a trivially fast upstream ...", file=sys.stderr)
        with NginxUpstreamStandIn(args.mode) as stand_in:
            tables.append(measured(ceiling_rows, stand_in, args))
    if {"delayed", "slow-callers"} & set(args.only):
        print("Measuring against a delayed upstream (nginx, wrk) ...", file=sys.stderr)
        with DelayedUpstreamStandIn(args.mode, baseline=baseline) as stand_in:
            if baseline:
                baseline_workers = shipped_workers(stand_in.baseline_app_dir())
            if "delayed" in args.only:
                points = [
                    (measurements.Upstream(delay), concurrency)
                    for delay in DELAYS_MS
                    for concurrency in args.concurrency
                ] + [
                    (measurements.Upstream(DELAYS_MS[0], tls=True), concurrency)
                    for concurrency in args.tls_concurrency
                ]
                tables.append(
                    measured(measurements.delayed_upstream, stand_in, points, args.seconds)
                )
            if "slow-callers" in args.only:
                tables.append(
                    measured(
                        measurements.slow_callers,
                        stand_in,
                        args.slow_callers,
                        SLOW_CALLER_LIMIT_SECONDS,
                    )
                )
    print(render(started, machine, args, tables, baseline, baseline_workers))
    return 0


def measured(measure, *arguments) -> Table:
    """measure(*arguments), a Table, with the load average before and after it."""
    before = load_average()
    table = measure(*arguments)
    table.load_before, table.load_after = before, load_average()
    return table


def stand_in_rows(stand_in, args) -> Table:
    proxied = measurements.ProxiedRequests()
    rows = measurements.added_latency(stand_in, args.calls, proxied)
    rows += measurements.throughput_ratios(stand_in, (1, 8, 32), args.seconds, proxied)
    rows += measurements.sts_calls(stand_in, proxied)
    return rows_table("The proxy in the local stand-in", rows)


def ceiling_rows(stand_in, args) -> Table:
    rows = measurements.ceiling(stand_in, 32, args.seconds, args.calls)
    rows += measurements.peak_memory(stand_in)
    return rows_table("The proxy against a trivially fast upstream", rows)


def rows_table(title: str, rows: list) -> Table:
    table = Table(title, ("measurement", "path", "result", "target", "met"))
    previous = None
    for row in rows:
        measurement = "" if row.measurement == previous else row.measurement
        previous = row.measurement
        met = {None: "", True: "yes", False: "**no**"}[row.met]
        table.rows.append([measurement, row.path, row.value, row.target, met])
    return table


def describe_machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    proxy_python = subprocess.run(
        [str(PROXY_PYTHON), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}; proxy on {proxy_python}, "
        f"the rest on Python {platform.python_version()}; load average before the run: "
        f"{load_average()}"
    )


def shipped_workers(app_dir: Path = PROXY_APP_DIR) -> str:
    """What `app_dir`'s gunicorn.conf.py runs, read by the proxy's Python with that app's own
    modules (a baseline's settings may import code the checkout no longer has)."""
    script = (
        "import json, runpy, sys; s = runpy.run_path(sys.argv[1]); "
        "print(json.dumps({k: s.get(k) for k in "
        "('workers', 'worker_class', 'threads', 'worker_connections')}))"
    )
    settings = json.loads(
        subprocess.run(
            [str(PROXY_PYTHON), "-c", script, str(app_dir / "gunicorn.conf.py")],
            env={**os.environ, "PYTHONPATH": str(app_dir)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    worker = settings["worker_class"].rsplit(".", 1)[-1]
    if settings["threads"]:
        return f"{settings['workers']} {worker} workers x {settings['threads']} threads"
    return f"{settings['workers']} {worker} workers x {settings['worker_connections']} connections"


def render(started, machine: str, args, tables: list, baseline, baseline_workers) -> str:
    lines = [
        f"### Proxy benchmark, {started:%Y-%m-%d %H:%M} UTC ({args.mode} mode)",
        "",
        f"- Machine: {machine}",
        f"- Load generators: {PYTHON_LOAD_GENERATOR} (stand-in, ceiling); {WRK_LOAD_GENERATOR} "
        "(delayed upstream)",
        f"- Proxy: gunicorn with helpers/app/gunicorn.conf.py as shipped: {shipped_workers()}",
    ]
    if baseline:
        lines.append(
            f"- Baseline (`--compare-with`): helpers/app at {baseline}, with its own "
            f"gunicorn.conf.py: {baseline_workers}"
        )
    lines.append("")
    return "\n".join(lines) + "\n" + "\n".join(table.markdown() for table in tables)


if __name__ == "__main__":
    sys.exit(main())
