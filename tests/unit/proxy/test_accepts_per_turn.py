"""The worker accepts ACCEPTS_PER_TURN new connections per turn of its loop, not gunicorn's one
(gunicorn_worker._AcceptingServer; measured in benchmarks/RESULTS.md, "Serving"). Run by the
proxy's own Python: gevent is in .venv-proxy only."""

from proxy_support import run_in_proxy_python

CHECK = """
import inspect
from gunicorn.workers import ggevent
from mlflow_proxy.gunicorn_worker import ACCEPTS_PER_TURN, DeadlineWorker, _AcceptingServer

# gunicorn builds the worker's servers from its module's StreamServer and sets max_accept = 1
# with several workers: if either changes, the swap in DeadlineWorker.run() needs another look.
source = inspect.getsource(ggevent.GeventWorker.run)
assert "server = StreamServer(s, handle=hfun, spawn=pool" in source, source
assert "server.max_accept = 1" in source, source
assert "def run(self)" in inspect.getsource(DeadlineWorker)

server = _AcceptingServer(("127.0.0.1", 0), handle=lambda *args: None)
server.max_accept = 1  # what gunicorn does
print(server.max_accept, ACCEPTS_PER_TURN)
"""


def test_gunicorns_one_per_turn_is_replaced():
    result = run_in_proxy_python(CHECK)
    assert result.stdout.split() == ["16", "16"]
