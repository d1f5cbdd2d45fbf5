"""A trivially fast upstream for the proxy, in two builds.

Both stand where the emulator would, on its port: they answer any MLflow call with a small fixed
experiment, stream a 1 GiB artifact, and read and drop request bodies of any size. They check no
signature.

- TrivialUpstreamStandIn: a WSGI app under the emulator's gunicorn, from .venv alone. The tests
  use it (tests/reliability), so that they need nothing the Makefile does not install.
- NginxUpstreamStandIn: one nginx (Debian's package; `make bench` installs it) in two server
  blocks: the upstream, as fast as this machine allows (the artifact is a sparse file sent with
  sendfile), and a reference, a plain non-signing reverse proxy to it with keep-alive
  connections: what "a proxy that costs nothing" looks like here. The benchmarks use it.

Each starts through local/stand_in.py's life cycle (ports, logs, health waits, clean-up), with the
proxy in front.
"""

import getpass
import shutil
from pathlib import Path

from benchmarks.measured_stand_in import MeasuredStandIn
from local.stand_in import free_port

BIG_ARTIFACT_PATH = "/api/2.0/mlflow-artifacts/artifacts/big"
BIG_ARTIFACT_BYTES = 1024**3
SMALL_CALL_PATH = "/api/2.0/mlflow/experiments/get?experiment_id=0"
SMALL_ANSWER = (
    '{"experiment": {"experiment_id": "0", "name": "Default", '
    '"artifact_location": "s3://bucket/0", "lifecycle_stage": "active"}}'
)


ZEROS = bytes(1024 * 1024)


def trivial_upstream(environ, start_response):
    """The WSGI app of TrivialUpstreamStandIn."""
    body = environ["wsgi.input"]
    while body.read(len(ZEROS)):
        pass
    if environ["PATH_INFO"] == BIG_ARTIFACT_PATH:
        headers = [("Content-Type", "application/octet-stream")]
        headers.append(("Content-Length", str(BIG_ARTIFACT_BYTES)))
        start_response("200 OK", headers)
        return (ZEROS for _ in range(BIG_ARTIFACT_BYTES // len(ZEROS)))
    answer = SMALL_ANSWER.encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
    )
    return [answer]


class TrivialUpstreamStandIn(MeasuredStandIn):
    """The proxy in front of trivial_upstream, run like the emulator."""

    PARTS = ("emulator", "proxy")  # no mlflow server, no S3: the upstream answers by itself

    def __init__(self, mode: str = "tracking", **options):
        # No artifact store: the proxy forwards artifact calls (to the big artifact here) instead
        # of serving them from S3 itself.
        proxy_env = {**options.pop("proxy_env", {}), "MLFLOW_PROXY_ARTIFACT_STORE_URI": ""}
        super().__init__(mode, proxy_env=proxy_env, **options)

    def _command(self, part: str) -> list:
        command = super()._command(part)
        if part == "emulator":
            command[-1] = "benchmarks.fast_upstream:trivial_upstream"
        return command


class NginxMissing(RuntimeError):
    pass


def nginx_config(workdir: Path, upstream_port: int, reference_port: int) -> str:
    temp = workdir / "nginx-temp"
    return f"""
daemon off;
master_process on;
worker_processes auto;
# Workers of a root master switch to this user; it must read the sparse artifact.
user {getpass.getuser()};
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    client_max_body_size 0;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    sendfile on;

    server {{
        listen 127.0.0.1:{upstream_port};
        default_type application/json;

        location = /__stand-in/health {{
            return 200 '{{"status": "ok"}}';
        }}
        location = {BIG_ARTIFACT_PATH} {{
            default_type application/octet-stream;
            alias {workdir}/big-artifact;
        }}
        location / {{
            return 200 '{SMALL_ANSWER}';
        }}
    }}

    upstream trivially_fast {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}

    server {{
        listen 127.0.0.1:{reference_port};
        location / {{
            proxy_pass http://trivially_fast;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # Stream both ways, as the proxy does.
            proxy_request_buffering off;
            proxy_buffering off;
        }}
    }}
}}
"""


def find_nginx() -> str:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if nginx is None:
        raise NginxMissing("nginx is not installed: `make bench` installs it")
    return nginx


class NginxUpstreamStandIn(TrivialUpstreamStandIn):
    """The proxy in front of nginx's trivially fast upstream; nginx's reference on `nginx_url`."""

    def __init__(self, mode: str = "tracking", **options):
        nginx = find_nginx()
        super().__init__(mode, **options)
        self._nginx = nginx
        self.ports["nginx"] = free_port()

    @property
    def nginx_url(self) -> str:
        return self.url("nginx")

    def _command(self, part: str) -> list:
        if part != "emulator":
            return super()._command(part)
        config = self.workdir / "nginx.conf"
        if not config.exists():
            self._prepare_nginx(config)
        return [self._nginx, "-p", str(self.workdir), "-c", str(config), "-e", "stderr"]

    def _prepare_nginx(self, config: Path) -> None:
        self.workdir.chmod(0o755)  # nginx's workers read the artifact from here
        (self.workdir / "nginx-temp").mkdir()
        with open(self.workdir / "big-artifact", "wb") as artifact:
            artifact.truncate(BIG_ARTIFACT_BYTES)
        config.write_text(nginx_config(self.workdir, self.ports["emulator"], self.ports["nginx"]))
