"""Fixtures for the reliability tests: the real chain on loopback, and a place for timings.

Timings are reported in pytest's closing summary, never asserted.
"""

import pytest

from benchmarks.measured_stand_in import MeasuredStandIn

_timings: list = []


def pytest_terminal_summary(terminalreporter):
    if _timings:
        terminalreporter.section("reliability timings (reported, not asserted)")
        for line in _timings:
            terminalreporter.write_line(line)


@pytest.fixture
def report():
    """report("...") adds a line to the closing summary."""
    return _timings.append


@pytest.fixture(scope="session")
def stand_in():
    """mlflow server <- SageMaker emulator <- proxy, the proxy with the settings we ship."""
    with MeasuredStandIn("tracking") as chain:
        yield chain
