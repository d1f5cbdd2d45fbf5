"""The gunicorn worker's thread pool (thread_pool.LastIdleFirstPool): as many threads as were ever
busy at once, the last idle one reused first, calls beyond the bound served in order."""

import threading

import pytest

from mlflow_proxy.thread_pool import LastIdleFirstPool

PATIENCE_SECONDS = 10


@pytest.fixture
def pool():
    made = []

    def make(max_threads):
        made.append(LastIdleFirstPool(max_threads))
        return made[-1]

    yield make
    for each in made:
        each.shutdown(wait=False)


def test_one_call_at_a_time_is_served_by_one_thread_only(pool):
    threads = pool(8)
    served_by = {threads.submit(threading.get_ident).result(PATIENCE_SECONDS) for _ in range(20)}
    assert len(served_by) == 1


def test_the_thread_that_went_idle_last_serves_the_next_call(pool):
    threads = pool(8)
    release = [threading.Event() for _ in range(3)]

    def wait_then_tell_thread(event):
        event.wait()
        return threading.get_ident()

    busy = [threads.submit(wait_then_tell_thread, event) for event in release]
    for event, future in zip(release, busy):  # idle in the order 0, 1, 2
        event.set()
        future.result(PATIENCE_SECONDS)
    assert threads.submit(threading.get_ident).result(PATIENCE_SECONDS) == busy[2].result()


def test_calls_beyond_the_bound_wait_and_are_served_first_come_first_served(pool):
    threads = pool(2)
    release = threading.Event()
    order = []
    blockers = [threads.submit(release.wait) for _ in range(2)]
    later = [threads.submit(order.append, index) for index in range(5)]
    assert not any(future.done() for future in later)
    release.set()
    for future in blockers + later:
        future.result(PATIENCE_SECONDS)
    assert order == [0, 1, 2, 3, 4]
    assert threads._started == 2


def test_a_failing_call_hands_its_exception_to_its_future_and_the_thread_serves_on(pool):
    threads = pool(1)
    failed = threads.submit(lambda: 1 / 0)
    assert isinstance(failed.exception(PATIENCE_SECONDS), ZeroDivisionError)
    assert threads.submit(lambda: "next").result(PATIENCE_SECONDS) == "next"


def test_shutdown_ends_the_idle_threads_and_refuses_new_calls(pool):
    threads = pool(4)
    idents = [threads.submit(threading.get_ident).result(PATIENCE_SECONDS)]
    started = [thread for thread in threading.enumerate() if thread.ident in idents]
    threads.shutdown(wait=False)
    for thread in started:
        thread.join(PATIENCE_SECONDS)
        assert not thread.is_alive()
    with pytest.raises(RuntimeError):
        threads.submit(threading.get_ident)
