"""The proxy bundle (`make -C helpers build-ProxyBundle`): what it holds, and that the proxy
starts from it under Python 3.12 with nothing installed, the way the systemd unit starts it."""

import hashlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from packaging_support import (
    HELPERS,
    INSTANCE_PYTHON,
    build_proxy_bundle,
    free_port,
    installed_distributions,
    pinned_requirements,
    running,
    unit_settings,
    wait_for_http,
)

pytestmark = pytest.mark.slow

INSTANCE_ROOT = "/opt/mlflow-proxy"
DUMMY_TRACKING_ARN = "arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/packaging-test"


def unit_command_and_environment(bundle):
    """ExecStart and Environment= of the real unit, with /opt/mlflow-proxy mapped to bundle."""
    service = unit_settings("Service")
    (exec_start,) = service["ExecStart"]
    environment = dict(value.split("=", 1) for value in service["Environment"])
    in_bundle = {name: value.replace(INSTANCE_ROOT, str(bundle)) for name, value in environment.items()}
    return shlex.split(exec_start.replace(INSTANCE_ROOT, str(bundle))), in_bundle


def tree_digest(root):
    """A digest of every file's path, mode and bytes under root."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root)}\0{path.stat().st_mode:o}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def replace_option(command, option, value):
    command = list(command)
    command[command.index(option) + 1] = value
    return command


def test_bundle_holds_the_app_and_the_instance_files(proxy_bundle):
    assert (proxy_bundle / "app" / "mlflow_proxy" / "__init__.py").is_file()
    assert (proxy_bundle / "app" / "gunicorn.conf.py").is_file()
    for name in ("bootstrap.sh", "mlflow-proxy.service", "mlflow-proxy.logrotate", "amazon-cloudwatch-agent.json"):
        assert (proxy_bundle / name).read_bytes() == (HELPERS / name).read_bytes(), name


def test_bundle_vendors_every_pinned_requirement_at_its_pin(proxy_bundle):
    installed = installed_distributions(proxy_bundle / "vendor")
    for name, version in pinned_requirements().items():
        assert installed.get(name) == version, name


ELF_MACHINE_X86_64 = 62


def test_bundle_vendors_compiled_wheels_for_cpython_3_12_on_x86_64(proxy_bundle):
    extensions = list((proxy_bundle / "vendor").rglob("*.so"))
    names = {path.name for path in extensions}
    # cffi's and MarkupSafe's are built per CPython version; cryptography's is abi3 (any 3.x).
    assert {"_cffi_backend.cpython-312-x86_64-linux-gnu.so", "_rust.abi3.so"} <= names, names
    assert all(name.endswith((".cpython-312-x86_64-linux-gnu.so", ".abi3.so")) for name in names), names
    for path in extensions:  # an abi3 name does not say the architecture; the ELF header does
        header = path.read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == ELF_MACHINE_X86_64, path


def test_bundle_carries_no_caches_tests_or_build_machine_scripts(proxy_bundle):
    assert not list(proxy_bundle.rglob("__pycache__"))
    assert not list(proxy_bundle.rglob("*.pyc"))
    assert not (proxy_bundle / "vendor" / "bin").exists()
    assert not (proxy_bundle / "tests").exists()


def test_an_unchanged_source_builds_the_same_bundle(proxy_bundle, tmp_path):
    """Same bytes, same layer version: a redeploy without changes replaces no instance."""
    assert tree_digest(build_proxy_bundle(tmp_path)) == tree_digest(proxy_bundle)


def test_every_bundle_path_the_unit_names_exists(proxy_bundle):
    unit = (HELPERS / "mlflow-proxy.service").read_text()
    for path in set(re.findall(rf"{INSTANCE_ROOT}/[\w./-]*\w", unit)):
        assert (proxy_bundle / Path(path).relative_to(INSTANCE_ROOT)).exists(), path


@pytest.fixture(scope="module")
def clean_python_3_12(tmp_path_factory):
    """A Python 3.12 with an empty site-packages, like Ubuntu's before the bundle arrives."""
    if INSTANCE_PYTHON is None:
        pytest.skip("no Python 3.12 here (pyenv 3.12.1 or python3.12 on PATH)")
    venv = tmp_path_factory.mktemp("py312")
    subprocess.run([INSTANCE_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The proof is only worth something if nothing but the bundle can provide these.
    probe = subprocess.run([str(python), "-c", "import flask"], capture_output=True)
    assert probe.returncode != 0, "the clean Python 3.12 already has flask"
    return python


def test_proxy_starts_from_the_bundle_under_python_3_12_and_answers_health(
    proxy_bundle, clean_python_3_12, tmp_path
):
    # Python writes bytecode beside what it imports: a copy keeps the shared bundle as built
    # for the tests that compare or inspect it, whichever order they run in.
    bundle = shutil.copytree(proxy_bundle, tmp_path / "bundle")
    command, environment = unit_command_and_environment(bundle)
    assert command[:3] == ["/usr/bin/python3", "-m", "gunicorn"]
    port = free_port()
    command = [str(clean_python_3_12)] + command[1:]
    command = replace_option(command, "--bind", f"127.0.0.1:{port}")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        **environment,
        "SM_MLFLOW_RESOURCE_ARN": DUMMY_TRACKING_ARN,
        "MLFLOW_PROXY_AUTH": "none",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    log = tmp_path / "proxy.log"
    with log.open("wb") as output, running(
        command, cwd=bundle / "app", env=env, stdout=output, stderr=subprocess.STDOUT
    ) as proxy:
        try:
            response = wait_for_http(f"http://127.0.0.1:{port}/health", proxy)
        except BaseException:
            print(log.read_text())
            raise
    assert response.status_code == 200, log.read_text()


def test_the_bundle_signs_and_verifies_an_rs256_token_under_python_3_12(proxy_bundle, clean_python_3_12):
    """cryptography is compiled and has no pure-Python fallback: the OIDC callers need its
    wheel for the instances' platform to load, from the bundle alone."""
    _, environment = unit_command_and_environment(proxy_bundle)
    script = (
        "import jwt\n"
        "from cryptography.hazmat.primitives.asymmetric import rsa\n"
        "key = rsa.generate_private_key(public_exponent=65537, key_size=2048)\n"
        "token = jwt.encode({'sub': 'bundle'}, key, algorithm='RS256')\n"
        "print(jwt.decode(token, key.public_key(), algorithms=['RS256'])['sub'])\n"
    )
    result = subprocess.run(
        # -B: no bytecode written into the shared bundle, which other tests inspect and compare.
        [str(clean_python_3_12), "-B", "-c", script],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": environment["PYTHONPATH"]},
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "bundle", result.stderr
