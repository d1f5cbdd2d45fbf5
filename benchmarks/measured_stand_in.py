"""The local stand-in as the benchmarks measure it (tests/reliability uses it too).

One difference from local/stand_in.py's defaults: the proxy runs as the instances run it, with
gunicorn.conf.py's worker count, not one.

Given a baseline revision, that revision's proxy runs beside it in front of the same emulator
(part "baseline-proxy", `baseline_proxy_url`), so that both are measured in one run. It signs
with the static key the emulator accepts, not with assumed roles: AssumeRole is counted per
role for the checkout's proxy alone (measurements.sts_calls). What that leaves out of the
baseline's calls is a read of its cached credentials per call (not measured apart).
"""

import signal
from pathlib import Path
from typing import Optional

from benchmarks.baseline import extract_app, proxy_command
from local.stand_in import StandIn, free_port

BASELINE_PROXY = "baseline-proxy"
ASSUMED_ROLE_SETTINGS = (
    "SM_MLFLOW_ROLE_ARN",
    "SM_MLFLOW_READ_ONLY_ROLE_ARN",
    "AWS_ENDPOINT_URL_STS",
)


class MeasuredStandIn(StandIn):
    def __init__(
        self,
        mode: str = "tracking",
        *,
        proxy_workers: Optional[int] = None,
        baseline: Optional[str] = None,
        **options,
    ):
        """proxy_workers: None = gunicorn.conf.py's count. baseline: a git revision, or None."""
        super().__init__(mode, proxy_workers=proxy_workers, **options)
        self.baseline = baseline
        if baseline:
            self.PARTS = StandIn.PARTS + (BASELINE_PROXY,)
            self.ports[BASELINE_PROXY] = free_port()
        self._baseline_app: Optional[Path] = None

    @property
    def baseline_proxy_url(self) -> str:
        return self.url(BASELINE_PROXY)

    def baseline_app_dir(self) -> Path:
        if self._baseline_app is None:
            self._baseline_app = extract_app(self.baseline, self.workdir / "baseline")
        return self._baseline_app

    def _command(self, part: str) -> list:
        if part == BASELINE_PROXY:
            return proxy_command(self.baseline_app_dir(), self.ports[part])
        return super()._command(part)

    def _environment(self, part: str) -> dict:
        if part != BASELINE_PROXY:
            return super()._environment(part)
        env = super()._environment("proxy")
        for name in ASSUMED_ROLE_SETTINGS:
            env.pop(name, None)
        env["PYTHONPATH"] = str(self.baseline_app_dir())
        return env

    def _health_url(self, part: str) -> str:
        if part == BASELINE_PROXY:
            return self.url(part) + "/health"
        return super()._health_url(part)

    def _signal(self, part: str, how: signal.Signals):
        if part == BASELINE_PROXY and how == signal.SIGTERM:
            how = signal.SIGINT  # gunicorn's quick shutdown, as for the checkout's proxy
        return super()._signal(part, how)
