"""The local stand-in as the benchmarks measure it (tests/reliability uses it too).

One difference from local/stand_in.py's defaults: the proxy runs as the instances run it, with
gunicorn.conf.py's worker count, not one.
"""

from typing import Optional

from local.stand_in import StandIn


class MeasuredStandIn(StandIn):
    def __init__(self, mode: str = "tracking", *, proxy_workers: Optional[int] = None, **options):
        """proxy_workers: None = gunicorn.conf.py's count."""
        super().__init__(mode, proxy_workers=proxy_workers, **options)
