# The shipped helpers/app/gunicorn.conf.py, plus: every request the worker handles after the
# first WARM_CALLS (the health check and the warm-up) runs inside itertools.starmap, so that
# `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=starmap_next` counts exactly
# the instructions spent handling those requests (gunicorn's parsing, the app, the response
# write) and not start-up or the idle poller loop, whose count depends on wall time.
import itertools
import os

from gunicorn.workers.base_async import AsyncWorker

exec(open(os.path.join(os.getcwd(), "gunicorn.conf.py")).read())
WARM_CALLS = int(os.environ.get("WARM_CALLS", "31"))


def post_worker_init(worker):
    # gevent's worker handles a whole connection in handle() and each request on it in
    # handle_request(): that is what is counted there, the parsing of the head excepted.
    name = "handle_request" if isinstance(worker, AsyncWorker) else "handle"
    handle = getattr(worker, name)
    seen = [0]

    def counted_handle(*args):
        seen[0] += 1
        if seen[0] <= WARM_CALLS:
            return handle(*args)
        for result in itertools.starmap(handle, [args]):
            return result

    setattr(worker, name, counted_handle)
