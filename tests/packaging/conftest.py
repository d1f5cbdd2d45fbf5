"""Fixtures for the packaging tests: the bundle and layers as `make`/`sam build` produce them,
and a local S3 (moto) for `sam package`. Builds are slow on small machines: each runs once."""

import subprocess

import pytest

from packaging_support import (
    REPO,
    SAM,
    TEMPLATE,
    VENV_BIN,
    build_proxy_bundle,
    free_port,
    run,
    running,
    tool_env,
    wait_for_http,
)


@pytest.fixture(scope="session")
def proxy_bundle(tmp_path_factory):
    """The proxy bundle as `make build-ProxyBundle` builds it, in a fresh directory."""
    return build_proxy_bundle(tmp_path_factory.mktemp("proxy-bundle"))


@pytest.fixture(scope="session")
def sam_config(tmp_path_factory):
    """An empty samconfig: the project's (cached builds, resolve_s3) is for people deploying."""
    config = tmp_path_factory.mktemp("samconfig") / "samconfig.toml"
    config.write_text("version = 0.1\n")
    return config


@pytest.fixture(scope="session")
def sam_build(tmp_path_factory, sam_config):
    """`sam build` of the real template into a fresh build directory; returns that directory."""
    if not TEMPLATE.exists():
        pytest.fail(f"{TEMPLATE} does not exist yet: the packaging tests build the real template")
    build_dir = tmp_path_factory.mktemp("sam-build")
    run(
        [str(SAM), "build", "--config-file", str(sam_config), "--template-file", str(TEMPLATE),
         "--build-dir", str(build_dir), "--parallel"],
        cwd=REPO,
        env=tool_env(),
    )
    return build_dir


@pytest.fixture(scope="module")
def local_s3():
    """A local S3 (moto_server on a loopback port); yields its endpoint URL."""
    port = free_port()
    endpoint = f"http://localhost:{port}"
    command = [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with running(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as server:
        wait_for_http(f"http://127.0.0.1:{port}/moto-api/", server)
        yield endpoint
