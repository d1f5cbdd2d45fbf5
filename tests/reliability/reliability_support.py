"""Helpers the reliability tests share: calls through the proxy, its workers, a hung part."""

import json
import os
import runpy
import signal
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

from benchmarks.proc import process_tree
from local.stand_in import PROXY_APP_DIR

SHIPPED_GUNICORN = runpy.run_path(str(PROXY_APP_DIR / "gunicorn.conf.py"))
SMALL_CALL_PATH = "/api/2.0/mlflow/experiments/get?experiment_id=0"
# Far longer than anything should take: a call that needs it has found a stuck proxy.
CLIENT_TIMEOUT_SECONDS = 60


def proxy_workers(chain) -> list:
    """The pids of the proxy's gunicorn workers, once all have started.

    gunicorn forks them a little apart, and the first one answers health checks already.
    `chain` is a MeasuredStandIn: its proxy_workers, or gunicorn.conf.py's, is the count.
    """
    expected = chain.proxy_workers or SHIPPED_GUNICORN["workers"]
    master = chain.processes["proxy"].pid
    deadline = time.monotonic() + CLIENT_TIMEOUT_SECONDS
    while True:
        workers = sorted(pid for pid in process_tree(master) if pid != master)
        if len(workers) >= expected or time.monotonic() > deadline:
            return workers
        time.sleep(0.1)


def call_proxy(chain, path: str = SMALL_CALL_PATH, timeout: float = CLIENT_TIMEOUT_SECONDS):
    """(status, body) of one authenticated GET through the proxy: the body parsed as JSON, or
    the raw bytes when it is not JSON (so that a failure shows what came)."""
    request = urllib.request.Request(
        chain.proxy_url + path, headers={"Authorization": f"Bearer {chain.token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        with error:
            status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


@contextmanager
def frozen(chain, part: str):
    """The part stops answering (SIGSTOP) but keeps its port: a hung upstream."""
    group = chain.processes[part].pid
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)
