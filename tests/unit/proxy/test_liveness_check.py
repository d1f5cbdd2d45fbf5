"""The worker's stand-in for urllib3's socket wait (gunicorn_worker._wait_for_socket), run by the
proxy's own Python (gevent is in .venv-proxy only): the same answers as urllib3's own for an
open, a readable and a closed connection, and installed in urllib3 once the worker is imported."""

from proxy_support import run_in_proxy_python

CHECK = """
import socket
from urllib3.util import wait
from mlflow_proxy.gunicorn_worker import _wait_for_socket
assert wait.wait_for_socket is _wait_for_socket
ours, theirs = socket.socketpair()
answers = [_wait_for_socket(ours, read=True, timeout=0), _wait_for_socket(ours, write=True, timeout=0)]
theirs.sendall(b"x")
answers.append(_wait_for_socket(ours, read=True, timeout=0))
ours.recv(1)
theirs.close()
answers.append(_wait_for_socket(ours, read=True, timeout=0))
answers.append(wait.poll_wait_for_socket(ours, read=True, timeout=0))
print(answers)
"""


def test_it_answers_as_urllib3_does():
    result = run_in_proxy_python(CHECK)
    # open: nothing to read, writable; a byte: readable; closed: readable (EOF), as urllib3 says
    assert result.stdout.strip() == "[False, True, True, True, True]"
