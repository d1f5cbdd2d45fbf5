"""The local stand-in as the benchmarks measure it (tests/reliability uses it too).

Two differences from local/stand_in.py's defaults:
- the proxy runs as the instances run it, with gunicorn.conf.py's worker count, not one;
- mlflow server runs without its background job runner (MLflow 3's job execution, which the
  REST API we forward does not need): started, it keeps both cores of this machine busy for
  10-20 s after the server answers, under whatever is measured then.
"""

from typing import Optional

from local.stand_in import StandIn


class MeasuredStandIn(StandIn):
    def __init__(self, mode: str = "tracking", *, proxy_workers: Optional[int] = None, **options):
        """proxy_workers: None = gunicorn.conf.py's count."""
        super().__init__(mode, proxy_workers=proxy_workers, **options)

    def _environment(self, part: str) -> dict:
        environment = super()._environment(part)
        if part == "mlflow":
            environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        return environment
