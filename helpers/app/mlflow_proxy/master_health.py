"""The load balancer's health check, answered by the gunicorn master on a port of its own.

A worker answers `/health` on the proxy's port in its turn among the calls ready to run: with its
core saturated that took up to 2.8 s (benchmarks/RESULTS.md), and a health check that times out
takes a busy instance out of service just when the fleet needs it. The master is a process of its
own that sleeps between its rounds, so it answers within milliseconds however busy the workers
are; and it answers with what it knows of them: every worker has reported within
WORKER_SILENCE_SECONDS through gunicorn's heartbeat (the one its `timeout` kills on), the
configured number of workers is running, and the master is not stopping.

Set by MLFLOW_PROXY_HEALTH_PORT (docs/configuration.md); the instances use 5001 and the target
group checks it (nested/proxy.yaml). `/health` on the proxy's own port still answers as before.
"""

import http
import json
import logging
import time
from typing import Optional

from mlflow_proxy.config import ConfigError

logger = logging.getLogger("gunicorn.error")

# A gevent worker reports every second from its loop (gunicorn's workers/ggevent.py), later when
# a turn of the loop runs long under load (seconds at most, measured). Silent for this long (or
# half gunicorn's timeout, if that is shorter: reported before the master kills it), it is
# stuck; the shipped timeout (330 s, gunicorn.conf.py) kills it much later.
WORKER_SILENCE_SECONDS = 15.0
# Only the load balancer's nodes reach the port (nested/proxy.yaml), one check each per interval;
# these bound what anyone else who reaches it could hold in the master.
CALLER_SECONDS = 2.0
MAX_CHECKS_AT_ONCE = 32


def workers_status(arbiter, now: float) -> tuple[int, dict]:
    """(HTTP status, JSON body) for the workers of `arbiter` at monotonic time `now`."""
    if not arbiter.LISTENERS:  # closed by Arbiter.stop(): the proxy is shutting down
        return 503, _unavailable("the proxy is stopping")
    silence = min(WORKER_SILENCE_SECONDS, (arbiter.timeout or 2 * WORKER_SILENCE_SECONDS) / 2)
    silent = []
    for pid, worker in list(arbiter.WORKERS.items()):
        try:
            seconds = now - worker.tmp.last_update()
        except (OSError, ValueError):  # a worker that has just exited: reaped next round
            continue
        if seconds > silence:
            silent.append(f"{pid} ({seconds:.0f} s)")
    if silent:
        return 503, _unavailable(f"workers silent for over {silence:g} s: {', '.join(silent)}")
    if len(arbiter.WORKERS) < arbiter.num_workers:
        return 503, _unavailable(
            f"{len(arbiter.WORKERS)} of {arbiter.num_workers} workers running"
        )
    return 200, {"status": "ok", "workers": len(arbiter.WORKERS)}


def _unavailable(message: str) -> dict:
    return {"error_code": "TEMPORARILY_UNAVAILABLE", "message": message}


# The master's server, kept here rather than in gunicorn.conf.py: a reload (SIGHUP) executes the
# configuration file again, and the workers it then forks must still find the server to close.
_server = None


def start(arbiter, port: Optional[int]) -> None:
    """gunicorn's when_ready hook, in the master: listen on `port` (None: nothing to do)."""
    global _server
    if port is None or _server is not None:
        return
    # Imported here: gunicorn.conf.py has monkey-patched by now (gevent's sockets), and reading
    # the configuration file needs no gevent (tests read it with runpy).
    from gevent.pywsgi import WSGIHandler, WSGIServer

    from mlflow_proxy.gunicorn_worker import mlflow_error_bytes

    class HealthCheckHandler(WSGIHandler):
        def handle(self):
            # A caller that connects and stalls is let go: a load balancer sends its check at once.
            self.socket.settimeout(CALLER_SECONDS)
            super().handle()

        def handle_one_request(self):
            answer = super().handle_one_request()
            if isinstance(answer, tuple):  # pywsgi's refusal, (status, bytes): MLflow JSON instead
                status = int(answer[0])
                return answer[0], mlflow_error_bytes(
                    status, "MALFORMED_REQUEST", "this port answers GET /health only"
                )
            return answer

        def log_error(self, msg, *args):
            # pywsgi's messages quote what the caller sent.
            logger.warning("Refused a malformed health check from %s", self.client_address[0])

    host = _listening_host(arbiter.cfg.address)
    server = WSGIServer(
        (host, port),
        lambda environ, start_response: _answer(arbiter, environ, start_response),
        handler_class=HealthCheckHandler,
        spawn=MAX_CHECKS_AT_ONCE,
        log=None,
        error_log=logger,
    )
    # Started in the master's event loop, which runs while the arbiter waits for signals (its
    # queue is gevent's once patched).
    try:
        server.start()
    except OSError as error:
        raise ConfigError(
            f"MLFLOW_PROXY_HEALTH_PORT={port}: cannot listen on {host}:{port} "
            f"({error.strerror}); choose a free port other than the proxy's own."
        ) from None
    _server = server
    arbiter.log.info("Health check on %s:%s (master)", host, port)


def leave() -> None:
    """gunicorn's post_fork hook, in each new worker: it inherits the master's listening socket
    and event loop, and must not answer on it."""
    global _server
    if _server is not None:
        _server.close()
        _server = None


def _answer(arbiter, environ, start_response):
    if environ.get("PATH_INFO") != "/health":
        status, body = 404, {
            "error_code": "ENDPOINT_NOT_FOUND",
            "message": "this port answers GET /health only",
        }
    elif environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        status, body = 405, {
            "error_code": "ENDPOINT_NOT_FOUND",
            "message": "only GET /health is answered here",
        }
    else:
        status, body = workers_status(arbiter, time.monotonic())
    data = json.dumps(body).encode()
    start_response(
        f"{status} {http.HTTPStatus(status).phrase}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [data]


def _listening_host(addresses) -> str:
    """The host the proxy's own port is bound to: the health check listens where it does."""
    for address in addresses:
        if isinstance(address, tuple):
            return address[0]
    raise ConfigError("MLFLOW_PROXY_HEALTH_PORT needs the proxy bound to a TCP address")
