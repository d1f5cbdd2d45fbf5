"""What the packaging tests share: paths, the build tools' environment, processes, CloudFormation YAML."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
HELPERS = REPO / "helpers"
TEMPLATE = REPO / "template.yaml"
SAM = REPO / ".venv-sam" / "bin" / "sam"
VENV_BIN = Path(sys.executable).parent
PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
# The instances run Ubuntu 24.04's Python 3.12; pyenv provides one here.
_PYENV_PYTHON_3_12 = PYENV_ROOT / "versions/3.12.1/bin/python3.12"
INSTANCE_PYTHON = str(_PYENV_PYTHON_3_12) if _PYENV_PYTHON_3_12.exists() else shutil.which("python3.12")


def tool_env(**extra):
    """The environment the build tools run in: this virtualenv's python3 (with pip) first, and
    pyenv's interpreters for SAM's own Python builders."""
    env = dict(os.environ)
    path = [str(VENV_BIN), str(PYENV_ROOT / "shims"), env.get("PATH", "")]
    env.update(
        PATH=os.pathsep.join(path),
        PYENV_VERSION=env.get("PYENV_VERSION", "3.11.7:3.12.1:3.13.0"),
        SAM_CLI_TELEMETRY="0",
        PYTHONDONTWRITEBYTECODE="1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(extra)
    return env


def run(command, **kwargs):
    """Runs a build tool; on failure the test shows its output."""
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML: short-form intrinsics (!Ref, !Sub...) become {"Fn::X": ...}."""


def _intrinsic(loader, tag_suffix, node):
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_cfn(text):
    return yaml.load(text, Loader=_CfnLoader)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running(command, **kwargs):
    """Starts a process in its own process group and kills the whole group on the way out."""
    process = subprocess.Popen(command, start_new_session=True, **kwargs)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


def wait_for_http(url, process, timeout=60):
    """Polls url until it answers; fails early if the process serving it has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the process serving {url} exited with {process.returncode}")
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout}s")


def pinned_requirements(requirements=HELPERS / "app" / "requirements.txt"):
    """{normalised name: version} pinned in a requirements file."""
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "_", name).lower()] = version
    return pins


def installed_distributions(vendor):
    """{normalised name: version} from the *.dist-info directories pip wrote."""
    found = {}
    for dist_info in vendor.glob("*.dist-info"):
        name, version = dist_info.name.removesuffix(".dist-info").rsplit("-", 1)
        found[re.sub(r"[-_.]+", "_", name).lower()] = version
    return found


# Where each resource type names the code or template that `sam package` uploads.
ARTIFACT_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::Application": "Location",
    "AWS::Lambda::Function": "Code",
    "AWS::Lambda::LayerVersion": "Content",
    "AWS::CloudFormation::Stack": "TemplateURL",
}


def artifacts(template):
    """(logical id, type, artifact reference) for each resource that names an artifact."""
    for logical_id, resource in (template.get("Resources") or {}).items():
        prop = ARTIFACT_PROPERTIES.get(resource.get("Type"))
        value = (resource.get("Properties") or {}).get(prop) if prop else None
        if value is not None and not (isinstance(value, dict) and "ZipFile" in value):
            yield logical_id, resource["Type"], value


def local_templates(path):
    """{path: template} for a template file and every nested template it names by local path."""
    found = {path: load_cfn(path.read_text())}
    for _, resource_type, value in artifacts(found[path]):
        is_nested = resource_type in ("AWS::CloudFormation::Stack", "AWS::Serverless::Application")
        if is_nested and isinstance(value, str) and "://" not in value:
            found.update(local_templates((path.parent / value).resolve()))
    return found


def unit_settings(section):
    """{key: [values]} of one section of helpers/mlflow-proxy.service (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", (HELPERS / "mlflow-proxy.service").read_text())
    settings = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def build_proxy_bundle(workdir):
    """Runs `make build-ProxyBundle` the way `sam build` does, in a copy of helpers/; the copy
    holds a bytecode cache, as a developer's checkout does. Returns the artifacts directory."""
    source = workdir / "helpers"
    shutil.copytree(HELPERS, source)
    stale_cache = source / "app" / "mlflow_proxy" / "__pycache__"
    stale_cache.mkdir(exist_ok=True)
    (stale_cache / "stale.cpython-311.pyc").write_bytes(b"not for the instances")
    artifacts = workdir / "ProxyBundle"
    run(["make", "-C", str(source), "build-ProxyBundle", f"ARTIFACTS_DIR={artifacts}"], env=tool_env())
    return artifacts
