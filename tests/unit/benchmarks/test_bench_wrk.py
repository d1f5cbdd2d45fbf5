"""Reading wrk's output (benchmarks/wrk.py): recorded outputs, never wrk itself."""

import pytest

from benchmarks import wrk

# wrk 4.1.0 against a server answering 404 (recorded).
ALL_NOT_FOUND = """\
Running 1s test @ http://127.0.0.1:29031/nonexistent
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.30ms    2.31ms  26.75ms   91.25%
    Req/Sec   640.10    146.95   764.00     80.00%
  Latency Distribution
     50%    2.72ms
     75%    3.21ms
     90%    4.86ms
     99%   14.18ms
  1282 requests in 1.01s, 651.02KB read
  Non-2xx or 3xx responses: 1282
Requests/sec:   1275.33
Transfer/sec:    647.63KB
"""

# A queueing proxy: latencies in seconds, timeouts and resets.
SLOW_WITH_ERRORS = """\
Running 10s test @ http://127.0.0.1:40001/api/2.0/mlflow/experiments/get?experiment_id=0
  2 threads and 256 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   958.12ms  102.44ms   1.98s    88.10%
    Req/Sec   140.22     60.10   300.00     70.00%
  Latency Distribution
     50%  958.00ms
     75%  990.10ms
     90%    1.20s
     99%    1.90s
  2563 requests in 10.02s, 1.02MB read
  Socket errors: connect 0, read 3, write 0, timeout 12
Requests/sec:    255.79
Transfer/sec:    104.33KB
"""


def test_a_run_with_every_answer_an_error():
    result = wrk.parse_wrk(ALL_NOT_FOUND)
    assert (result.requests, result.not_ok, result.socket_errors) == (1282, 1282, 0)
    assert result.seconds == pytest.approx(1.01)
    assert result.p50_seconds == pytest.approx(0.00272)
    assert result.p99_seconds == pytest.approx(0.01418)
    assert result.ok == 0 and result.per_second == 0 and result.errors == 1282


def test_a_slow_run_with_socket_errors():
    result = wrk.parse_wrk(SLOW_WITH_ERRORS)
    assert (result.requests, result.not_ok, result.socket_errors) == (2563, 0, 15)
    assert result.p50_seconds == pytest.approx(0.958)
    assert result.p99_seconds == pytest.approx(1.90)
    # Answered 2xx per second of the run, not wrk's Requests/sec line.
    assert result.per_second == pytest.approx(2563 / 10.02)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("980.00us", 0.00098),
        ("25.74ms", 0.02574),
        ("1.02s", 1.02),
        ("1.50m", 90.0),
        ("2.00h", 7200.0),
    ],
)
def test_durations_in_each_unit(text, seconds):
    assert wrk.parse_duration(text) == pytest.approx(seconds)


def test_output_without_a_latency_distribution_is_refused():
    without = "\n".join(line for line in SLOW_WITH_ERRORS.splitlines() if "%" not in line)
    with pytest.raises(wrk.WrkOutputUnreadable, match="latency distribution"):
        wrk.parse_wrk(without)
    with pytest.raises(wrk.WrkOutputUnreadable, match="not a wrk duration"):
        wrk.parse_duration("12 ms")


def test_the_command_asks_for_the_latency_distribution_in_whole_seconds(monkeypatch):
    monkeypatch.setattr(wrk, "find_wrk", lambda: "/usr/bin/wrk")
    command = wrk.command("http://h:1/p", 8, 2.6, {"Authorization": "Bearer t"}, 30)
    assert command == [
        "/usr/bin/wrk", "-t2", "-c8", "-d3s", "--timeout=30s", "--latency",
        "-H", "Authorization: Bearer t", "http://h:1/p",
    ]  # fmt: skip
    # No more threads than connections: wrk refuses that.
    assert wrk.command("http://h:1/p", 1, 1, {}, 30)[1] == "-t1"
