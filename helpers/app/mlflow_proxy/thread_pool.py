"""The gunicorn worker's thread pool (gunicorn_worker.DeadlineWorker.get_thread_pool)."""

import threading
from collections import deque
from concurrent import futures


class _Slot:
    """A pool thread's hand-off: the call it is given, and the lock it waits on until then."""

    __slots__ = ("call", "wake")

    def __init__(self):
        self.call = None
        self.wake = threading.Lock()
        self.wake.acquire()


class LastIdleFirstPool(futures.Executor):
    """Up to `max_threads` threads, each call run on the thread that went idle last.

    concurrent.futures.ThreadPoolExecutor, gthread's pool, hands each call to whichever waiting
    thread its queue wakes, and starts a new thread whenever none is waiting at that instant: with
    hundreds of threads it starts them all and cycles through their cold stacks (measured: 30%
    more CPU per call at 256 threads than at 32, the same 64 calls in flight;
    docs/configuration.md, "Threads"). Here the threads started are as many as were ever busy at
    once, and the warm ones serve. Calls beyond `max_threads` wait, first come first served.
    Threads are daemons: gthread waits for its connections itself (graceful_timeout).
    """

    def __init__(self, max_threads: int):
        self._max_threads = max_threads
        self._started = 0
        self._idle: list[_Slot] = []  # the last to go idle at the end
        self._waiting: deque = deque()  # calls for which no thread was free
        self._lock = threading.Lock()
        self._shut_down = False

    def submit(self, fn, /, *args):
        call = (futures.Future(), fn, args)
        with self._lock:
            if self._shut_down:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._idle:
                slot = self._idle.pop()
                slot.call = call
                slot.wake.release()
            elif self._started < self._max_threads:
                self._started += 1
                threading.Thread(target=self._serve, args=(call,), daemon=True).start()
            else:
                self._waiting.append(call)
        return call[0]

    def _serve(self, call):
        slot = _Slot()
        while call is not None:
            future, fn, args = call
            running = future.set_running_or_notify_cancel()
            result = failure = None
            if running:
                try:
                    result = fn(*args)
                except BaseException as error:
                    failure = error
            # Idle before the future is done: the call its callbacks lead to (gthread's next
            # request on the connection) finds this thread, not a new one.
            with self._lock:
                call = self._waiting.popleft() if self._waiting else None
                idle = call is None and not self._shut_down
                if idle:
                    self._idle.append(slot)
            if running:
                if failure is None:
                    future.set_result(result)
                else:
                    future.set_exception(failure)
            del future, fn, args, result, failure
            if idle:
                slot.wake.acquire()
                call, slot.call = slot.call, None

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._lock:
            self._shut_down = True
            idle, self._idle = self._idle, []
            if cancel_futures:
                for future, _, _ in self._waiting:
                    future.cancel()
        for slot in idle:
            slot.wake.release()  # with no call: the thread ends
