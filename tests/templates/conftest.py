"""Fixtures for the template gates: the templates, parsed once per session."""

import shutil

import pytest

from template_support import ROOT, TEMPLATE_FILES, load


@pytest.fixture(scope="session")
def templates():
    return {name: load(name) for name in TEMPLATE_FILES}


@pytest.fixture(scope="session")
def root(templates):
    return templates["template.yaml"]


@pytest.fixture(scope="session")
def proxy(templates):
    return templates["nested/proxy.yaml"]


@pytest.fixture(scope="session")
def mlflow(templates):
    return templates["nested/mlflow.yaml"]


@pytest.fixture(scope="session")
def networking(templates):
    return templates["nested/networking.yaml"]


@pytest.fixture(scope="session")
def domain(templates):
    return templates["nested/sagemaker-domain.yaml"]


@pytest.fixture
def template_copy(tmp_path):
    """A scratch copy of the templates (and the code they point at) to scan or alter."""
    for name in TEMPLATE_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path
