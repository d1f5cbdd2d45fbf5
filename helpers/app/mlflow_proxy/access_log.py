"""One line per request: who, what, the outcome, upstream latency and bytes.

The line is written when the response is closed, so a streamed body is counted whole. It holds
the path without its query string and never a header: no token, signature or credential.
"""

import logging
import time
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import quote

logger = logging.getLogger("mlflow_proxy.access")


@dataclass
class Exchange:
    client: str
    method: str
    path: str
    caller: str = "-"
    status: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    upstream_seconds: Optional[float] = None
    started: float = field(default_factory=time.monotonic)

    def write(self) -> None:
        upstream_ms = "-" if self.upstream_seconds is None else f"{self.upstream_seconds * 1000:.1f}"
        total_ms = (time.monotonic() - self.started) * 1000
        logger.info(
            "client=%s caller=%s method=%s path=%s status=%d upstream_ms=%s total_ms=%.1f "
            "bytes_in=%d bytes_out=%d",
            self.client,
            self.caller,
            self.method,
            quote(self.path, safe="/"),  # no control characters: one request, one line
            self.status,
            upstream_ms,
            total_ms,
            self.bytes_in,
            self.bytes_out,
        )
