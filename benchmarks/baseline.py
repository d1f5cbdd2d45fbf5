"""Another git revision's proxy, run beside the checkout's in the same run (`--compare-with`).

Its helpers/app comes out of git (`git archive`) and runs under that revision's own
gunicorn.conf.py, in the checkout's .venv-proxy: a revision whose pins differ is measured with
today's libraries.
"""

import io
import subprocess
import tarfile
from pathlib import Path

from local.stand_in import PROXY_PYTHON, REPO_ROOT, gunicorn_options


def short_revision(revision: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", revision],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def extract_app(revision: str, into: Path) -> Path:
    """helpers/app as it was at `revision`, under `into`; returns its directory."""
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", revision, "helpers/app"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "helpers" / "app"


def proxy_command(app: Path, port: int) -> list:
    """The baseline's proxy as its revision shipped it; its environment needs PYTHONPATH=app."""
    # fmt: off
    return [
        str(PROXY_PYTHON), "-m", "gunicorn", "-c", str(app / "gunicorn.conf.py"),
        "--bind", f"127.0.0.1:{port}", *gunicorn_options(), "mlflow_proxy:create_app()",
    ]
    # fmt: on
