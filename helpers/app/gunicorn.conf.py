# gunicorn settings for the proxy. The bind address is given on the command line:
#   gunicorn -c gunicorn.conf.py --bind 127.0.0.1:8080 'mlflow_proxy:create_app()'
if __name__ == "__config__":  # read by gunicorn (tests and benchmarks read it with runpy too)
    # gevent's sockets, locks and threads, in the master before the app is built (preload_app):
    # urllib3 and botocore must see gevent's ssl when they are first imported, or every new TLS
    # context recurses without end. gunicorn itself has only imported ssl, which is safe.
    from gevent import monkey

    monkey.patch_all()

import logging
import multiprocessing
import os

from mlflow_proxy import master_health
from mlflow_proxy.config import load_connections, load_health_port

# Fields of a log record that no line of ours or gunicorn's shows. The thread's name costs most:
# in a greenlet, threading.current_thread() builds a dummy thread (logging's documented switches;
# the process id stays, gunicorn's lines show it).
logging.logThreads = False
logging.logMultiprocessing = False
logging.logAsyncioTasks = False

# gunicorn's gevent worker: a call holds a greenlet, not an OS thread, for as long as SageMaker
# takes to answer or a transfer lasts, so the calls in flight are bounded by configuration, not
# by threads, and hundreds of them waiting cost no GIL hand-offs (benchmarks/RESULTS.md,
# "Serving"). With deadlines for callers that stall while sending a request
# (MLFLOW_PROXY_HEADER_TIMEOUT_SECONDS, ..._BODY_READ_TIMEOUT_SECONDS) and MLflow JSON for
# requests it cannot parse, an over-long request line included: mlflow_proxy/gunicorn_worker.py.
worker_class = "mlflow_proxy.gunicorn_worker.DeadlineWorker"
# One process per core: the GIL caps a process at one core, and greenlets cover the waits on
# SageMaker. Fewer processes are also fewer credential caches (one AssumeRole each).
workers = multiprocessing.cpu_count()
# The connections a worker serves at once, kept-alive ones included; MLFLOW_PROXY_CONNECTIONS
# sets them (default 512), and with them the connection pools to SageMaker and S3, so that no
# call opens a connection of its own. Measured, with the memory they can take on a t3.small:
# docs/configuration.md, "Connections".
worker_connections = load_connections(os.environ)

# Build the app once in the master: a bad configuration then stops gunicorn with its message
# and a non-zero exit, instead of workers that fail and are restarted in a loop.
preload_app = True

# Seconds a worker may go silent before it is killed: its gevent loop reports every second
# unless a call holds the CPU that long.
timeout = 330
# On SIGTERM (systemctl stop, the instance's shutdown) requests in flight get this long to finish:
# the transfer length no rolling update or scale-in cuts (docs/rollouts.md), as long as the target
# group's deregistration delay (nested/proxy.yaml); the unit's TimeoutStopSec waits longer still.
graceful_timeout = 300
# Longer than the ALB's idle timeout (330 s, nested/proxy.yaml: above the upstream read timeout),
# so the ALB, not us, closes idle connections; an idle one holds a greenlet, not a thread.
keepalive = 340

# MLflow's GET calls can carry long query strings (batchGet of many trace ids, the 100 runs of
# get-history-bulk-interval: about 4.2 KB): allow the longest request line gunicorn bounds, not
# its 4094-byte default (0 would mean unbounded). Longer lines get a 400 JSON
# (mlflow_proxy/gunicorn_worker.py); the ALB's own bound is 16 KB (docs/mlflow3.md).
limit_request_line = 8190

# The load balancer's health check, answered by the master on MLFLOW_PROXY_HEALTH_PORT (5001 on the
# instances) within milliseconds however busy the workers are, from their heartbeats:
# mlflow_proxy/master_health.py. Each worker closes its inherited copy of that port.
_health_port = load_health_port(os.environ)


def when_ready(server):
    master_health.start(server, _health_port)


def post_fork(server, worker):
    master_health.leave()


# Our access log (mlflow_proxy.access) knows the caller and the upstream latency; gunicorn's
# would only repeat part of it.
accesslog = None
errorlog = "-"
loglevel = "info"

# No runtime control socket: nothing here uses gunicornc, and a shared default path would be
# contended by every gunicorn on the machine (tests start several). On the instances it would
# also need a writable directory the sandbox (helpers/mlflow-proxy.service) does not give.
control_socket_disable = True
