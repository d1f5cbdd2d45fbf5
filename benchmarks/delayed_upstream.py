"""An upstream that answers after a fixed delay, as SageMaker does, over HTTP and HTTPS, with the
proxies under test in front.

One nginx (Debian's package, with libnginx-mod-http-echo for `echo_sleep`; `make bench` installs
both) listens twice, plain and TLS (a CA and a certificate for 127.0.0.1 made at start-up). Every
call waits `delay` milliseconds (`?delay=25`, the query parameter the load generator adds; the
proxy passes the query on), then gets a fixed experiment with a Content-Length, as SageMaker's
small answers have. nginx logs `$connection_requests` for every request it answers: a 1 is the
first request of a connection, so the 1s in a window of the log are the new connections.

In front, each proxy twice, one per listener: the checkout's, started as local/stand_in.py starts
it (gunicorn.conf.py as shipped, the bind address only), and optionally a baseline: another git
revision's helpers/app (`git archive`), under that revision's own gunicorn.conf.py. The HTTPS
proxies trust the CA through SSL_CERT_FILE, which OpenSSL's default verify paths honour
(urllib3 loads them when given no CA of its own): no proxy setting or code is involved.
"""

import datetime
import getpass
import ipaddress
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from benchmarks.fast_upstream import (
    SMALL_ANSWER,
    NginxMissing,
    TrivialUpstreamStandIn,
    find_nginx,
)
from benchmarks.baseline import proxy_command
from local.stand_in import PROXY_APP_DIR, free_port

# The log is written in 64 KiB buffers flushed every 100 ms: wait longer than that before reading.
LOG_FLUSH_SECONDS = 0.1
ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
DELAYS_MS = (25, 250)


def call_path(delay_ms: int) -> str:
    return f"/api/2.0/mlflow/experiments/get?experiment_id=0&delay={delay_ms}"


def nginx_config(workdir: Path, port: int, tls_port: int, delays_ms: Iterable[int]) -> str:
    temp = workdir / "nginx-temp"
    delays = "\n        ".join(f"{ms} {ms / 1000:g};" for ms in delays_ms)
    flush_ms = round(LOG_FLUSH_SECONDS * 1000)
    return f"""
daemon off;
master_process on;
worker_processes 1;
user {getpass.getuser()};
load_module {ECHO_MODULE};
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;

events {{
    worker_connections 8192;
}}

http {{
    log_format connection_requests '$connection_requests';
    access_log {workdir}/upstream-access.log connection_requests buffer=64k flush={flush_ms}ms;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests 1000000;
    # Idle connections stay open for the whole run (SageMaker's idle timeout is not known): the
    # new connections counted are those the proxy's pooling opens, not reopenings after a
    # point of the table that left some idle for a while.
    keepalive_timeout 3600s;

    map $arg_delay $delay {{
        default 0;
        {delays}
    }}

    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {workdir}/upstream-cert.pem;
        ssl_certificate_key {workdir}/upstream-key.pem;
        default_type application/json;

        location = /__stand-in/health {{
            return 200 '{{"status": "ok"}}';
        }}
        # echo_sleep, then an answer of nginx's own (with its Content-Length, not chunked).
        location / {{
            echo_sleep $delay;
            echo_exec /__answer;
        }}
        location = /__answer {{
            internal;
            return 200 '{SMALL_ANSWER}';
        }}
    }}
}}
"""


def write_certificates(workdir: Path) -> Path:
    """A CA, and a certificate it signed for 127.0.0.1 (key and chain for nginx); returns the
    CA's file, for SSL_CERT_FILE."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: str, key, issuer: str, issuer_key, is_ca: bool, extensions=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("benchmark CA", ca_key, "benchmark CA", ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    server = certificate(
        "127.0.0.1",
        key,
        "benchmark CA",
        ca_key,
        False,
        [x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])],
    )
    pem = serialization.Encoding.PEM
    (workdir / "upstream-cert.pem").write_bytes(server.public_bytes(pem))
    (workdir / "upstream-key.pem").write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ca_file = workdir / "benchmark-ca.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    return ca_file


@dataclass(frozen=True)
class ConnectionCounts:
    requests: int
    new_connections: int

    @property
    def new_per_1000(self) -> float:
        return 1000 * self.new_connections / self.requests if self.requests else 0.0


def count_connections(log_lines: Iterable[str]) -> ConnectionCounts:
    """From `$connection_requests` log lines: requests, and those that opened a connection."""
    values = [line.strip() for line in log_lines if line.strip()]
    return ConnectionCounts(requests=len(values), new_connections=values.count("1"))


class UpstreamLog:
    """Windows of nginx's access log: mark() before a run, counts_since(mark) after it."""

    def __init__(self, path: Path):
        self.path = path

    def mark(self) -> int:
        time.sleep(3 * LOG_FLUSH_SECONDS)  # what came before is on disk, up to a line's end
        return self.path.stat().st_size if self.path.exists() else 0

    def counts_since(self, offset: int) -> ConnectionCounts:
        time.sleep(3 * LOG_FLUSH_SECONDS)
        with open(self.path) as log:
            log.seek(offset)
            return count_connections(log)


class DelayedUpstreamStandIn(TrivialUpstreamStandIn):
    """nginx with delays on `emulator`'s port (and `tls`'s), and the proxies in front:

    proxy_url(name, tls) for name "checkout" and, given a baseline revision, "baseline".
    """

    def __init__(
        self,
        mode: str = "tracking",
        *,
        baseline: Optional[str] = None,
        delays_ms: Iterable[int] = DELAYS_MS,
        **options,
    ):
        self._nginx = self.check_installed()
        self.delays_ms = tuple(delays_ms)
        self.proxies = ("checkout", "baseline") if baseline else ("checkout",)
        self.PARTS = ("emulator",) + tuple(
            self.part(name, tls) for name in self.proxies for tls in (False, True)
        )
        super().__init__(mode, **options)
        # After MeasuredStandIn's own: here the baseline's proxies are the parts named above, not
        # its "baseline-proxy"; baseline_app_dir() is its.
        self.baseline = baseline
        for part in self.PARTS:
            self.ports.setdefault(part, free_port())
            if part != "emulator":
                self.ports[f"{part}-health"] = free_port()
        self.ports["tls"] = free_port()

    @staticmethod
    def check_installed() -> str:
        """nginx's path; NginxMissing if it or its echo module is not installed."""
        nginx = find_nginx()
        if not Path(ECHO_MODULE).exists():
            raise NginxMissing(
                f"{ECHO_MODULE} is missing: `make bench` installs it (libnginx-mod-http-echo)"
            )
        return nginx

    @staticmethod
    def part(proxy: str, tls: bool) -> str:
        name = "proxy" if proxy == "checkout" else proxy
        return f"{name}-tls" if tls else name

    def proxy_part_url(self, proxy: str, tls: bool) -> str:
        return self.url(self.part(proxy, tls))

    def load_balancer_check_url(self, part: str) -> str:
        """The base URL the load balancer's health check would ask: the port gunicorn's master
        answers on (MLFLOW_PROXY_HEALTH_PORT, mlflow_proxy/master_health.py) where the proxy's
        revision has it, else the proxy's own port, as the target group checked before."""
        app = self.baseline_app_dir() if part.startswith("baseline") else PROXY_APP_DIR
        if (app / "mlflow_proxy" / "master_health.py").exists():
            return f"http://127.0.0.1:{self.ports[f'{part}-health']}"
        return self.url(part)

    def upstream_url(self, tls: bool) -> str:
        return f"https://127.0.0.1:{self.ports['tls']}" if tls else self.emulator_url

    @property
    def upstream_log(self) -> UpstreamLog:
        return UpstreamLog(self.workdir / "upstream-access.log")

    @property
    def ca_file(self) -> Path:
        return self.workdir / "benchmark-ca.pem"

    def _command(self, part: str) -> list:
        if part == "emulator":
            config = self.workdir / "nginx.conf"
            if not config.exists():
                self.workdir.chmod(0o755)  # nginx's workers read the certificate from here
                (self.workdir / "nginx-temp").mkdir()
                write_certificates(self.workdir)
                ports = (self.ports["emulator"], self.ports["tls"])
                config.write_text(nginx_config(self.workdir, *ports, self.delays_ms))
            return [self._nginx, "-p", str(self.workdir), "-c", str(config), "-e", "stderr"]
        if part.startswith("baseline"):
            return proxy_command(self.baseline_app_dir(), self.ports[part])
        return super()._command(part)  # the checkout's proxy on this part's port

    def _environment(self, part: str) -> dict:
        if part == "emulator":
            return super()._environment(part)
        env = super()._environment("proxy")
        env["MLFLOW_PROXY_HEALTH_PORT"] = str(self.ports[f"{part}-health"])
        if part.endswith("-tls"):
            env["SM_MLFLOW_ENDPOINT_URL"] = self.upstream_url(tls=True)
            env["SSL_CERT_FILE"] = str(self.ca_file)
        if part.startswith("baseline"):
            env["PYTHONPATH"] = str(self.baseline_app_dir())
        return env

    def _health_url(self, part: str) -> str:
        if part == "emulator":
            return super()._health_url(part)
        return self.url(part) + "/health"

    def _signal(self, part: str, how: signal.Signals):
        if part != "emulator" and how == signal.SIGTERM:
            how = signal.SIGINT  # gunicorn's quick shutdown, as for the one proxy
        return super()._signal(part, how)
