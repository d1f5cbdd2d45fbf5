# The shipped helpers/app/gunicorn.conf.py, plus: every request the worker handles after the
# first WARM_CALLS (the health check and the warm-up) runs inside itertools.starmap, so that
# `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=starmap_next` counts exactly
# the instructions spent handling those requests (gunicorn's parsing, the app, the response
# write) and not start-up or the idle poller loop, whose count depends on wall time.
import itertools
import os

exec(open(os.path.join(os.getcwd(), "gunicorn.conf.py")).read())
WARM_CALLS = int(os.environ.get("WARM_CALLS", "31"))


def post_worker_init(worker):
    handle = worker.handle
    seen = [0]

    def counted_handle(conn):
        seen[0] += 1
        if seen[0] <= WARM_CALLS:
            return handle(conn)
        for result in itertools.starmap(handle, [(conn,)]):
            return result

    worker.handle = counted_handle
