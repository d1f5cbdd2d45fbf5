"""For every test: nothing runs that a fresh machine lacks (tests/fresh_machine.py)."""

import sys

from tests.fresh_machine import allowed_places, refuse_programs_a_fresh_machine_lacks


def pytest_configure(config):
    sys.addaudithook(refuse_programs_a_fresh_machine_lacks(allowed_places()))
