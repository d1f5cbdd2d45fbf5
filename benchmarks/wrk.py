"""wrk (Debian's package; `make bench` installs it) as the load generator of the delayed-upstream
table: written in C, one event loop per thread, it leaves the cores to what it measures far more
than the Python threads of benchmarks/load.py do.

Only parse_wrk is pure; the tests use it on wrk's recorded output, never wrk itself.
"""

import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Mapping

# wrk's format_time_us: us, ms, s, m, h.
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"([\d.]+)(us|ms|s|m|h)")
# One event loop per core: more threads than cores only take turns.
THREADS = 2


class WrkMissing(RuntimeError):
    pass


class WrkOutputUnreadable(ValueError):
    pass


@dataclass(frozen=True)
class WrkResult:
    requests: int  # answered, whatever the status
    seconds: float
    not_ok: int  # answered with a status outside 2xx/3xx
    socket_errors: int  # connect, read, write errors and timeouts
    p50_seconds: float
    p99_seconds: float

    @property
    def ok(self) -> int:
        return self.requests - self.not_ok

    @property
    def per_second(self) -> float:
        """Requests answered 2xx/3xx per second."""
        return self.ok / self.seconds

    @property
    def errors(self) -> int:
        return self.not_ok + self.socket_errors


def parse_duration(text: str) -> float:
    """wrk's "25.74ms", "1.02s", "980.00us" in seconds."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise WrkOutputUnreadable(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """What `wrk --latency` printed."""
    total = re.search(r"^\s*(\d+) requests in (\S+?),", output, re.MULTILINE)
    p50 = re.search(r"^\s*50(?:\.000)?%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s*99(?:\.000)?%\s+(\S+)", output, re.MULTILINE)
    if not (total and p50 and p99):
        raise WrkOutputUnreadable(f"no request count or latency distribution in:\n{output}")
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    not_ok = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(total.group(1)),
        seconds=parse_duration(total.group(2)),
        not_ok=int(not_ok.group(1)) if not_ok else 0,
        socket_errors=sum(int(count) for count in sockets.groups()) if sockets else 0,
        p50_seconds=parse_duration(p50.group(1)),
        p99_seconds=parse_duration(p99.group(1)),
    )


def find_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkMissing("wrk is not installed: `make bench` installs it (apt-get install wrk)")
    return found


def command(
    url: str, connections: int, seconds: float, headers: Mapping[str, str], timeout: float
) -> list:
    header_options = [option for item in headers.items() for option in ("-H", "%s: %s" % item)]
    return [
        find_wrk(),
        f"-t{min(THREADS, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout))}s",
        "--latency",
        *header_options,
        url,
    ]


def run(
    url: str,
    connections: int,
    seconds: float,
    headers: Mapping[str, str] = {},
    timeout: float = 30,
) -> WrkResult:
    """`connections` closed-loop keep-alive connections for `seconds` (whole seconds: wrk's
    resolution); a request unanswered after `timeout` counts as a socket error."""
    done = subprocess.run(
        command(url, connections, seconds, headers, timeout),
        capture_output=True,
        text=True,
        timeout=seconds + timeout + 30,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode} on {url}: {done.stderr.strip()}")
    return parse_wrk(done.stdout)
