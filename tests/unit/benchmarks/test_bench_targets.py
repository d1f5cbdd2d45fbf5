"""The issue's targets as `make bench` judges them (benchmarks/measurements.py, report.py)."""

from dataclasses import replace

import pytest

from benchmarks.delayed_upstream import ConnectionCounts
from benchmarks.health import HealthLatency, summarize
from benchmarks.measurements import Side, Upstream, combine, delayed_checks
from benchmarks.report import Check, Table, target_cells
from benchmarks.wrk import WrkResult

DIRECT = Side(1000, 0.25, 0.26, 0, ConnectionCounts(2000, 256))
GOOD = Side(
    950, 0.251, 0.27, 0, ConnectionCounts(2000, 0), cpu_ms_per_request=0.7,
    health=HealthLatency(probes=100, failures=0, max_seconds=0.02, p99_seconds=0.01),
)  # fmt: skip
BASELINE = Side(250, 0.9, 1.2, 0, ConnectionCounts(2000, 100), cpu_ms_per_request=1.5)


def missed(checks):
    return [check.target for check in checks if not check.met]


def test_the_250_ms_row_at_256_wants_nine_tenths_of_direct():
    checks = delayed_checks(Upstream(250), 256, GOOD, DIRECT, None)
    assert [check.target for check in checks] == [
        "0 errors", "<= 1 new conn. / 1000", "/health <= 100 ms", ">= 0.9x direct",
    ]  # fmt: skip
    assert missed(checks) == []
    slower = replace(GOOD, per_second=899)
    assert missed(delayed_checks(Upstream(250), 256, slower, DIRECT, None)) == [">= 0.9x direct"]
    # Not a target at other points, nor over TLS.
    assert ">= 0.9x direct" not in str(delayed_checks(Upstream(250), 64, slower, DIRECT, None))
    assert ">= 0.9x direct" not in str(
        delayed_checks(Upstream(250, tls=True), 256, slower, DIRECT, None)
    )


def test_the_25_ms_row_at_256_wants_one_and_a_half_times_the_baseline():
    checks = delayed_checks(Upstream(25), 256, GOOD, DIRECT, BASELINE)
    assert missed(checks) == []
    assert ">= 1.5x baseline's req/s" in [check.target for check in checks]
    slower = replace(GOOD, per_second=374)
    assert missed(delayed_checks(Upstream(25), 256, slower, DIRECT, BASELINE)) == [
        ">= 1.5x baseline's req/s"
    ]
    # Without a baseline there is nothing to compare with.
    assert "baseline" not in str(delayed_checks(Upstream(25), 256, GOOD, DIRECT, None))


def test_cpu_per_request_wants_30_percent_below_the_baseline_at_every_point():
    cheaper, dearer = (replace(GOOD, cpu_ms_per_request=ms) for ms in (1.04, 1.06))
    assert missed(delayed_checks(Upstream(25), 8, cheaper, DIRECT, BASELINE)) == []
    assert missed(delayed_checks(Upstream(25, tls=True), 8, dearer, DIRECT, BASELINE)) == [
        "CPU <= 0.7x baseline's"
    ]


def test_connections_errors_and_health_are_wanted_everywhere():
    worse = replace(
        GOOD,
        errors=3,
        connections=ConnectionCounts(2000, 3),
        health=HealthLatency(probes=100, failures=0, max_seconds=0.101, p99_seconds=0.01),
    )
    assert missed(delayed_checks(Upstream(25, tls=True), 8, worse, DIRECT, None)) == [
        "0 errors", "<= 1 new conn. / 1000", "/health <= 100 ms",
    ]  # fmt: skip
    # A failed probe misses the target however fast the others were.
    failed = replace(GOOD, health=HealthLatency(100, 1, 0.02, 0.01))
    assert missed(delayed_checks(Upstream(25), 64, failed, DIRECT, None)) == ["/health <= 100 ms"]
    # Exactly 1 per 1000 is within the target.
    at_one = replace(GOOD, connections=ConnectionCounts(2000, 2))
    assert missed(delayed_checks(Upstream(25), 64, at_one, DIRECT, None)) == []


def test_two_halves_combine_into_one_rate_and_the_worse_quantiles():
    halves = [WrkResult(1000, 5.0, 10, 0, 0.025, 0.030), WrkResult(1200, 5.0, 0, 2, 0.024, 0.040)]
    side = combine(halves, connections=ConnectionCounts(2200, 0))
    assert side.per_second == pytest.approx((990 + 1200) / 10)
    assert (side.p50_seconds, side.p99_seconds, side.errors) == (0.025, 0.040, 12)


def test_health_latencies_summarize_to_max_and_p99():
    latencies = [0.001] * 99 + [0.5]
    summary = summarize(latencies, failures=1)
    assert (summary.probes, summary.failures, summary.max_seconds) == (100, 1, 0.5)
    assert summary.p99_seconds == 0.001
    assert summary.describe() == "500 / 1 (1 of 100 failed)"
    assert summarize([], 0) is None


def test_the_met_cell_names_what_was_missed():
    assert target_cells([]) == ("", "")
    assert target_cells([Check("a", True), Check("b", True)]) == ("a; b", "yes")
    assert target_cells([Check("a", False), Check("b", True), Check("c", False)]) == (
        "a; b; c",
        "**no**: a; c",
    )


def test_a_table_is_markdown_with_its_load_average():
    table = Table("T", ["x", "target", "met"], load_before="1.00, 2.00, 3.00")
    table.load_after = "4.00, 5.00, 6.00"
    table.add(["1"], [Check("x >= 1", True)])
    table.add(["0"], [Check("x >= 1", False)])
    table.notes.append("a note")
    assert table.markdown() == (
        "#### T\n\n"
        "Load average (1, 5, 15 min) before: 1.00, 2.00, 3.00; after: 4.00, 5.00, 6.00\n\n"
        "| x | target | met |\n|---|---|---|\n"
        "| 1 | x >= 1 | yes |\n| 0 | x >= 1 | **no**: x >= 1 |\n\n- a note\n"
    )
