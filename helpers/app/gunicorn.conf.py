# gunicorn settings for the proxy. The bind address is given on the command line:
#   gunicorn -c gunicorn.conf.py --bind 127.0.0.1:8080 'mlflow_proxy:create_app()'
import multiprocessing
import os

from mlflow_proxy.config import load_threads

# Responses are streamed, so a worker is busy for as long as a download lasts: threads, not
# one request per process. gunicorn's gthread worker, with deadlines for callers that stall
# while sending a request (MLFLOW_PROXY_HEADER_TIMEOUT_SECONDS, ..._BODY_READ_TIMEOUT_SECONDS)
# and MLflow JSON for requests it cannot parse, an over-long request line included:
# mlflow_proxy/gunicorn_worker.py.
worker_class = "mlflow_proxy.gunicorn_worker.DeadlineWorker"
# One process per core: the threads already cover the waits on SageMaker, and the GIL caps a
# process at one core. Measured on 2 cores (benchmarks/RESULTS.md), 2 workers serve at least as
# much as the 2*cores+1 of sync workers' rule of thumb, with 3 fewer processes (~40 MiB each) and
# 3 fewer credential caches (one AssumeRole each).
workers = multiprocessing.cpu_count()
# A thread is held for the whole of a call, a download or an upload: the threads, not the CPU,
# bound the calls a worker has in flight (at 32, 64 / 0.25 s with SageMaker answering in 250 ms).
# MLFLOW_PROXY_THREADS sets them (default 256), and with them the connection pools to SageMaker
# and S3, so that no call opens a connection of its own; idle threads are not even started.
# Measured, with the memory they can take on a t3.small: docs/configuration.md, "Threads".
threads = load_threads(os.environ)

# Build the app once in the master: a bad configuration then stops gunicorn with its message
# and a non-zero exit, instead of workers that fail and are restarted in a loop.
preload_app = True

# Seconds a worker may go silent before it is killed; a long stream keeps it talking, but the
# upstream may think for a while (MLFLOW_PROXY_READ_TIMEOUT_SECONDS defaults to 300).
timeout = 330
# On SIGTERM (systemctl stop, the instance's shutdown) requests in flight get this long to finish:
# the transfer length no rolling update or scale-in cuts (docs/rollouts.md), as long as the target
# group's deregistration delay (nested/proxy.yaml); the unit's TimeoutStopSec waits longer still.
graceful_timeout = 300
# Longer than the ALB's idle timeout (330 s, nested/proxy.yaml: above the upstream read timeout),
# so the ALB, not us, closes idle connections; idle keep-alive connections hold no thread.
keepalive = 340

# MLflow's GET calls can carry long query strings (batchGet of many trace ids, the 100 runs of
# get-history-bulk-interval: about 4.2 KB): allow the longest request line gunicorn bounds, not
# its 4094-byte default (0 would mean unbounded). Longer lines get a 400 JSON
# (mlflow_proxy/gunicorn_worker.py); the ALB's own bound is 16 KB (docs/mlflow3.md).
limit_request_line = 8190

# Our access log (mlflow_proxy.access) knows the caller and the upstream latency; gunicorn's
# would only repeat part of it.
accesslog = None
errorlog = "-"
loglevel = "info"

# No runtime control socket: nothing here uses gunicornc, and a shared default path would be
# contended by every gunicorn on the machine (tests start several). On the instances it would
# also need a writable directory the sandbox (helpers/mlflow-proxy.service) does not give.
control_socket_disable = True
