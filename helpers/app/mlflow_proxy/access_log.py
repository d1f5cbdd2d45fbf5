"""One line per request, one JSON object per line: who, what, the outcome, latency and bytes.

The keys (docs/security.md, "Access log") are a contract: CloudWatch metric filters and Logs
Insights queries read them. `client`, `caller`, `method`, `path` are strings, `status`,
`bytes_in`, `bytes_out` integers, `upstream_ms` a number or null, `total_ms` a number; `error`
is there only when the proxy refused or failed the request itself. json.dumps escapes every
value, so nothing a caller sends can end a line or forge a key.

The line is written when the response is closed, so a streamed body is counted whole. It holds
the path without its query string and never a header: no token, signature or credential.
"""

import functools
import ipaddress
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Mapping, Optional

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
    error: Optional[str] = None
    started: float = field(default_factory=time.monotonic)

    def write(self) -> None:
        line = {
            "client": self.client,
            "caller": self.caller,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "upstream_ms": None if self.upstream_seconds is None else _ms(self.upstream_seconds),
            "total_ms": _ms(time.monotonic() - self.started),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }
        if self.error is not None:
            line["error"] = self.error
        if logger.isEnabledFor(logging.INFO):
            # The record made directly: Logger.info would also walk the stack for the caller's
            # file and line, which no access line shows (a sixth of the line's cost).
            logger.handle(
                logger.makeRecord(
                    logger.name, logging.INFO, __file__, 0, json.dumps(line), None, None
                )
            )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def client_address(environ: Mapping) -> str:
    """The caller's IP address: the load balancer's X-Forwarded-For hop if it is one.

    werkzeug's ProxyFix (x_for=1, see create_app) copies the last X-Forwarded-For value into
    REMOTE_ADDR as it is; only a value that parses as an IP address is taken, else the TCP peer,
    so a forged `198.51.100.1 caller=admin` shows as the peer that sent it.
    """
    original = environ.get("werkzeug.proxy_fix.orig", {})
    for candidate in (environ.get("REMOTE_ADDR"), original.get("REMOTE_ADDR")):
        address = _ip_address(candidate or "")
        if address is not None:
            return address
    return "-"


# The same few addresses (the load balancer's nodes, the callers behind them) come again and
# again, and ipaddress parses in Python: 1.7% of a small call. 256 entries of at most a header's
# length (gunicorn's 8 KiB bound) each.
@functools.lru_cache(maxsize=256)
def _ip_address(candidate: str) -> Optional[str]:
    """The address in canonical form, or None if it is not one."""
    try:
        return str(ipaddress.ip_address(candidate.strip()))
    except ValueError:
        return None
