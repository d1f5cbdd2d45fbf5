"""docs/configuration.md's table and config.py cannot drift apart."""

import re
from pathlib import Path

import pytest

from mlflow_proxy.config import load_config
from proxy_support import TOKENS_JSON, TRACKING_ARN

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
ROW = re.compile(r"^\| `(?P<name>[A-Z][A-Z0-9_]+)` \|(?P<default>[^|]*)\|", re.M)
# A default written in backticks is a value: setting it must change nothing.
LITERAL_DEFAULT = re.compile(r"^`([^`]+)`")
BASE = {"SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN, "MLFLOW_PROXY_TOKENS": TOKENS_JSON}


class RecordingEnvironment(dict):
    """An environment that remembers every variable asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked = set()

    def get(self, name, default=None):
        self.asked.add(name)
        return super().get(name, default)

    def __getitem__(self, name):
        self.asked.add(name)
        return super().__getitem__(name)


def documented() -> dict:
    """{variable: its default column} of the table."""
    return {row["name"]: row["default"].strip() for row in ROW.finditer(DOC.read_text())}


def test_the_table_lists_exactly_the_variables_config_reads():
    environment = RecordingEnvironment(BASE)
    load_config(environment)
    assert sorted(documented()) == sorted(environment.asked)


@pytest.mark.parametrize(
    "name, value",
    [
        (name, LITERAL_DEFAULT.match(default)[1])
        for name, default in documented().items()
        if LITERAL_DEFAULT.match(default)
    ],
)
def test_each_default_in_the_table_is_the_one_config_applies(name, value):
    assert load_config({**BASE, name: value}) == load_config(BASE)


def test_a_wrong_default_in_the_table_would_be_caught():
    assert load_config({**BASE, "MLFLOW_PROXY_READ_TIMEOUT_SECONDS": "30"}) != load_config(BASE)
