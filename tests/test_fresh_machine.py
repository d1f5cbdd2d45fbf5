"""The checks that keep the suite passing on a fresh machine can themselves fail."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fresh_machine import (
    REPO,
    allowed_places,
    is_on_a_fresh_machine,
    program_of,
    refuse_programs_a_fresh_machine_lacks,
)

# Modules the tests import at collection: a clock read there is read once, long before the
# test that uses it runs (FIXED_NOW in test_emulated_sts.py was 5 minutes old by then).
IMPORTED_BY_THE_TESTS = ("tests", "local", "benchmarks")
CLOCK_CALLS = {"now", "utcnow", "today", "time", "time_ns", "monotonic", "perf_counter"}


def test_programs_of_the_checkout_and_the_base_system_may_run():
    places = allowed_places()
    assert is_on_a_fresh_machine(Path(sys.executable), places)
    assert is_on_a_fresh_machine(REPO / ".venv-proxy" / "bin" / "python", places)
    assert is_on_a_fresh_machine(Path("/usr/bin/bash"), places)


@pytest.mark.parametrize(
    "program", ["/usr/sbin/nginx", "/sbin/nginx", "/usr/local/bin/tool", "/opt/tool/bin/tool"]
)
def test_programs_installed_by_hand_may_not(program):
    assert not is_on_a_fresh_machine(Path(program), allowed_places())


def test_a_program_is_looked_up_on_the_path_it_is_started_with(tmp_path):
    (tmp_path / "tool").write_text("#!/bin/sh\n")
    (tmp_path / "tool").chmod(0o755)
    assert program_of("tool", ["tool"], None, {"PATH": str(tmp_path)}) == tmp_path / "tool"
    assert program_of("tool", ["tool"], None, {"PATH": "/nowhere"}) is None
    assert program_of("./tool", ["./tool"], str(tmp_path), None) == tmp_path / "tool"


def test_the_hook_refuses_a_program_outside_the_places_and_starts_the_others(tmp_path):
    hook = refuse_programs_a_fresh_machine_lacks((tmp_path,))
    with pytest.raises(RuntimeError, match="/usr/bin/true, which a fresh machine does not have"):
        hook("subprocess.Popen", ("/usr/bin/true", ["true"], None, None))
    hook("subprocess.Popen", (str(tmp_path / "tool"), ["tool"], None, None))
    hook("open", ("/usr/sbin/nginx", "r", 0))  # other events pass


def test_the_hook_is_installed_for_every_test():
    with pytest.raises(RuntimeError, match="which a fresh machine does not have"):
        subprocess.run(["/usr/local/sbin/anything"])


def _clock_calls_at_import(tree: ast.AST):
    """Calls such as datetime.now() or time.time() outside any function: run at import."""
    inside_functions = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for node in ast.walk(function)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLOCK_CALLS
            and id(node) not in inside_functions
        ):
            yield node.lineno


def test_the_clock_finder_finds_a_clock_read_at_import():
    source = "import datetime\nFIXED_NOW = datetime.datetime.now()\ndef f():\n    time.time()\n"
    assert list(_clock_calls_at_import(ast.parse(source))) == [2]


def test_no_module_the_tests_import_reads_the_clock_at_import():
    found = [
        f"{path.relative_to(REPO)}:{line}"
        for folder in IMPORTED_BY_THE_TESTS
        for path in sorted((REPO / folder).rglob("*.py"))
        for line in _clock_calls_at_import(ast.parse(path.read_text()))
    ]
    assert found == [], "freeze a clock per test, relative to now (a fixture), not at import"
