"""Start the whole local chain on loopback: S3, mlflow server <- SageMaker emulator <- proxy.

    with StandIn("serverless") as stand_in:
        ...  # MLFLOW_TRACKING_URI=stand_in.proxy_url, MLFLOW_TRACKING_TOKEN=stand_in.token

Each part is a real process on a free loopback port: a local S3 (`moto_server`) holding the
artifact bucket, `mlflow server` on SQLite (run like SageMaker runs it: without artifact serving,
artifacts under an s3:// root), the emulator and the proxy under gunicorn. The MLflow server and
the proxy reach the local S3 through AWS_ENDPOINT_URL_S3, as they would reach S3 on AWS. The demo
and the integration tests both start it through this class; tests use kill()/start() to take a
part away and bring it back on the same port.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping, Optional

from local import fixed_credentials
from local.oidc_issuer import LocalIssuer
from local.sagemaker_emulator import MODES

REPO_ROOT = Path(__file__).resolve().parent.parent
PROXY_APP_DIR = REPO_ROOT / "helpers" / "app"
# The proxy runs in its own virtualenv, with exactly the pins the instances get
# (helpers/app/requirements.txt, Python 3.12 like Ubuntu 24.04): mlflow server needs an older
# gunicorn than the proxy does. `make venv` builds it.
PROXY_PYTHON = REPO_ROOT / ".venv-proxy" / "bin" / "python"
START_TIMEOUT_SECONDS = 90
STOP_TIMEOUT_SECONDS = 15
# gunicorn's SIGTERM waits up to graceful_timeout for idle keep-alive connections to go; SIGINT
# is its quick shutdown. mlflow server's uvicorn is the other way round.
STOP_SIGNALS = {"mlflow": signal.SIGTERM, "emulator": signal.SIGINT, "proxy": signal.SIGINT}
ARTIFACT_BUCKET = "mlflow-artifacts"
# A prefix below the bucket, so that the proxy's mapping of URIs is exercised with one.
ARTIFACT_STORE_URI = f"s3://{ARTIFACT_BUCKET}/stand-in"
# moto accepts any key; the MLflow server has one of its own, as SageMaker's service role does.
S3_KEY = {"AWS_ACCESS_KEY_ID": "AKIASTANDINMLFLOW001", "AWS_SECRET_ACCESS_KEY": "stand-in-mlflow"}
# Nothing from this machine's AWS setup may leak into the stand-in or its clients.
NO_AWS_FILES = {
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def gunicorn_options() -> list:
    """Options every gunicorn here gets, whichever gunicorn version is pinned."""
    from gunicorn.config import KNOWN_SETTINGS

    # gunicorn 25+ opens a control socket at one fixed path per user; the emulator and the
    # proxy (and parallel test runs) would take it from each other.
    names = {setting.name for setting in KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class StartError(RuntimeError):
    pass


class StandIn:
    PARTS = ("s3", "mlflow", "emulator", "proxy")

    def __init__(
        self,
        mode: str = "tracking",
        *,
        assume_role: bool = False,
        proxy_env: Optional[Mapping[str, str]] = None,
        proxy_port: int = 0,
        proxy_workers: Optional[int] = 1,
        proxy_app: str = "mlflow_proxy:create_app()",
        log_dir: Optional[Path] = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
        self.mode = mode
        self.resource_arn = MODES[mode].resource_arn
        self.assume_role = assume_role
        self.token = fixed_credentials.DEMO_TOKEN
        self.read_only_token = fixed_credentials.READ_ONLY_TOKEN
        self._proxy_env = dict(proxy_env or {})
        # One worker by default: it keeps the two cores for the tests, and one worker means one
        # credentials cache, so "STS is called once" is exactly one call. None = as
        # gunicorn.conf.py says, as the instances run it (the benchmarks).
        self.proxy_workers = proxy_workers
        # What gunicorn serves; a test may wrap the proxy (its module on proxy_env's PYTHONPATH).
        self.proxy_app = proxy_app
        self.artifact_store_uri = ARTIFACT_STORE_URI
        self.ports = {
            "s3": free_port(),
            "mlflow": free_port(),
            "emulator": free_port(),
            "proxy": proxy_port or free_port(),
        }
        self.processes: dict = {}
        self._workdir: Optional[tempfile.TemporaryDirectory] = None
        # None: the logs go with the rest into the temporary workdir, removed at the end. The
        # demo keeps them in a folder of its own, to be read after it stopped.
        self._log_dir = log_dir
        # A local OIDC issuer (a thread of this process) that the proxy trusts, as it would
        # trust GitHub Actions': oidc_token() is what a CI job would present.
        self.issuer = LocalIssuer()

    # -- where things are -------------------------------------------------------------------

    def url(self, part: str) -> str:
        return f"http://127.0.0.1:{self.ports[part]}"

    @property
    def proxy_url(self) -> str:
        return self.url("proxy")

    @property
    def emulator_url(self) -> str:
        return self.url("emulator")

    @property
    def mlflow_url(self) -> str:
        return self.url("mlflow")

    @property
    def s3_url(self) -> str:
        return self.url("s3")

    @property
    def workdir(self) -> Path:
        return Path(self._workdir.name)

    def log_path(self, part: str) -> Path:
        return (self._log_dir or self.workdir) / f"{part}.log"

    def oidc_token(self, **claims) -> str:
        """A GitHub-Actions-like ID token from the local issuer; claims override the defaults."""
        return self.issuer.mint(
            {**fixed_credentials.OIDC_CLAIMS, **claims}, audience=fixed_credentials.OIDC_AUDIENCE
        )

    def stats(self) -> dict:
        """The emulator's counters, e.g. {"assume_role_calls": 1}."""
        with urllib.request.urlopen(self.emulator_url + "/__stand-in/stats", timeout=10) as answer:
            return json.load(answer)

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> "StandIn":
        self.start_all()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop_all()

    def start_all(self) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix=f"mlflow-stand-in-{self.mode}-")
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            for part in self.PARTS:  # a new run, new logs: parts restarted later append
                self.log_path(part).unlink(missing_ok=True)
        self.issuer.start()
        try:
            # All start at once (mlflow server is the slow one), then each is awaited.
            for part in self.PARTS:
                self._spawn(part)
            for part in self.PARTS:
                self._wait_healthy(part)
                self._prepare(part)
        except BaseException:
            self.stop_all()
            raise

    def start(self, part: str) -> None:
        """Start one part again (after kill()), on the same port, and wait until it is healthy."""
        self._spawn(part)
        self._wait_healthy(part)
        self._prepare(part)

    def kill(self, part: str) -> None:
        """Take one part away abruptly, as a crash would."""
        self._reap(part, self._signal(part, signal.SIGKILL))

    def stop_all(self) -> None:
        # Signal every part first and wait afterwards: they shut down in parallel.
        stopping = [
            (part, self._signal(part, STOP_SIGNALS.get(part, signal.SIGTERM)))
            for part in reversed(self.PARTS)
        ]
        for part, process in stopping:
            self._reap(part, process)
        self.issuer.stop()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    # -- the parts --------------------------------------------------------------------------

    def _command(self, part: str) -> list:
        bind = f"127.0.0.1:{self.ports[part]}"
        # fmt: off
        if part == "s3":
            return [
                sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.ports[part]),
            ]
        if part == "mlflow":
            return [
                sys.executable, "-m", "mlflow", "server",
                "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
                "--no-serve-artifacts",
                "--default-artifact-root", self.artifact_store_uri,
                "--host", "127.0.0.1", "--port", str(self.ports[part]),
                "--workers", "1",
            ]
        if part == "emulator":
            app = (
                f"local.sagemaker_emulator:create_app(mode={self.mode!r}, "
                f"upstream_url={self.mlflow_url!r})"
            )
            return [
                sys.executable, "-m", "gunicorn", "--bind", bind,
                "--workers", "1", "--worker-class", "gthread", "--threads", "8",
                # As long a request line as the proxy forwards (helpers/app/gunicorn.conf.py),
                # not gunicorn's 4094-byte default: SageMaker takes MLflow's long GETs.
                "--limit-request-line", "8190",
                *gunicorn_options(), app,
            ]
        workers = [] if self.proxy_workers is None else ["--workers", str(self.proxy_workers)]
        return [
            str(PROXY_PYTHON), "-m", "gunicorn", "-c", str(PROXY_APP_DIR / "gunicorn.conf.py"),
            "--bind", bind, *workers,
            *gunicorn_options(), self.proxy_app,
        ]
        # fmt: on

    def _environment(self, part: str) -> dict:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("AWS_", "MLFLOW_", "SM_MLFLOW_"))
        }
        env["PYTHONPATH"] = str(REPO_ROOT)  # local/__init__.py adds the proxy's directory
        if part == "mlflow":
            # SageMaker's MLflow touches S3 itself for a few calls (artifacts/list, ...).
            env.update(
                **NO_AWS_FILES,
                AWS_ENDPOINT_URL_S3=self.s3_url,
                AWS_DEFAULT_REGION=fixed_credentials.REGION,
                # MLflow 3's background job runner is not part of the REST API we forward; left
                # on, it keeps both cores busy for 10-20 s after the server answers.
                MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
                **S3_KEY,
            )
        if part != "proxy":
            return env
        env.update(
            PYTHONPATH=str(PROXY_APP_DIR),
            SM_MLFLOW_RESOURCE_ARN=self.resource_arn,
            SM_MLFLOW_ENDPOINT_URL=self.emulator_url,
            MLFLOW_PROXY_TOKENS=json.dumps(
                fixed_credentials.PROXY_TOKENS + [fixed_credentials.oidc_issuer(self.issuer.url)]
            ),
            AWS_ACCESS_KEY_ID=fixed_credentials.ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=fixed_credentials.SECRET_ACCESS_KEY,
            MLFLOW_PROXY_ARTIFACT_STORE_URI=self.artifact_store_uri,
            AWS_ENDPOINT_URL_S3=self.s3_url,
            # The presigned UI URL comes from SageMaker's control plane: the emulator answers.
            AWS_ENDPOINT_URL_SAGEMAKER=self.emulator_url,
            **NO_AWS_FILES,
        )
        if self.assume_role:
            env.update(
                SM_MLFLOW_ROLE_ARN=fixed_credentials.ROLE_ARN,
                SM_MLFLOW_READ_ONLY_ROLE_ARN=fixed_credentials.READ_ONLY_ROLE_ARN,
                AWS_ENDPOINT_URL_STS=self.emulator_url,
            )
        env.update(self._proxy_env)
        return env

    def client_environment(self) -> dict:
        """For an MLflow client process that has the proxy's URL and a token, and no AWS access."""
        return {
            **self._environment("client"),
            **NO_AWS_FILES,
            "MLFLOW_TRACKING_URI": self.proxy_url,
            "MLFLOW_TRACKING_TOKEN": self.token,
        }

    def _health_url(self, part: str) -> str:
        path = {
            "s3": "/moto-api/",
            "mlflow": "/health",
            "emulator": "/__stand-in/health",
            "proxy": "/health",
        }[part]
        return self.url(part) + path

    def _spawn(self, part: str) -> None:
        with open(self.log_path(part), "ab") as log:
            self.processes[part] = subprocess.Popen(
                self._command(part),
                cwd=REPO_ROOT,
                env=self._environment(part),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: mlflow server has children
            )

    def _wait_healthy(self, part: str) -> None:
        process = self.processes[part]
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StartError(f"{part} exited with {process.returncode}:\n{self.log_tail(part)}")
            try:
                with urllib.request.urlopen(self._health_url(part), timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise StartError(
            f"{part} not healthy after {START_TIMEOUT_SECONDS} s:\n{self.log_tail(part)}"
        )

    def _prepare(self, part: str) -> None:
        if part == "s3":
            # The bucket the stack creates; moto keeps it in memory, so again after a restart.
            create = urllib.request.Request(f"{self.s3_url}/{ARTIFACT_BUCKET}", method="PUT")
            with urllib.request.urlopen(create, timeout=10):
                pass

    def log_tail(self, part: str, lines: int = 40) -> str:
        return "\n".join(self.log_path(part).read_text(errors="replace").splitlines()[-lines:])

    def _signal(self, part: str, how: signal.Signals) -> Optional[subprocess.Popen]:
        process = self.processes.pop(part, None)
        if process is None:
            return None
        try:
            os.killpg(process.pid, how)  # the group: mlflow server's workers too
        except ProcessLookupError:
            pass
        return process

    def _reap(self, part: str, process: Optional[subprocess.Popen]) -> None:
        if process is None:
            return
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        try:  # whatever is left of the group, including children of a killed parent
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        # The leader's exit is not the group's: a worker SIGKILLed just now may hold the port
        # a moment longer. Orphans cannot be waited for (PID 1 here reaps none), their port can.
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while listening(self.ports[part]) and time.monotonic() < deadline:
            time.sleep(0.05)
