# The shipped helpers/app/gunicorn.conf.py, plus: callgrind's collection is switched on at the
# start of every request the worker handles after the first WARM_CALLS (the health check and the
# warm-up) and off at its end (valgrind --collect-atstart=no), so that the count is exactly the
# instructions spent handling those requests (the app, the response write; with the gthread
# worker gunicorn's parsing too) and not start-up or the idle poller loop, whose count depends
# on wall time. The switch is callgrind's client request (toggle_collect.c, built by run.sh),
# not --toggle-collect on a function: a greenlet switch inside the request (gevent waiting for
# the upstream's answer) ends that function in callgrind's eyes, and the rest of the request
# went uncounted whenever nginx had not answered by the time the worker read (1.95 M instead of
# 2.90 M at e5ba407). While the request waits, the turn of gevent's loop that resumes it is
# counted with it.
import ctypes
import os

from gunicorn.workers.base_async import AsyncWorker

exec(open(os.path.join(os.getcwd(), "gunicorn.conf.py")).read())
WARM_CALLS = int(os.environ.get("WARM_CALLS", "31"))


def post_worker_init(worker):
    # gevent's worker handles a whole connection in handle() and each request on it in
    # handle_request(): that is what is counted there, the parsing of the head excepted.
    name = "handle_request" if isinstance(worker, AsyncWorker) else "handle"
    handle = getattr(worker, name)
    toggle_collect = ctypes.CDLL(os.environ["TOGGLE_COLLECT_SO"]).toggle_collect
    seen = [0]

    def counted_handle(*args):
        seen[0] += 1
        if seen[0] <= WARM_CALLS:
            return handle(*args)
        toggle_collect()
        try:
            return handle(*args)
        finally:
            toggle_collect()

    setattr(worker, name, counted_handle)
