"""The local stand-in for SageMaker managed MLflow (and STS), and the demo that uses it.

The emulator checks IAM actions with the proxy package's own table (mlflow_proxy.iam_actions),
so the proxy's directory is importable from every entry point here (`python -m local.demo`, the
tests, the emulator under gunicorn), as pytest.ini's pythonpath makes it for the tests.
"""

import sys
from pathlib import Path

_PROXY_APP_DIR = str(Path(__file__).resolve().parent.parent / "helpers" / "app")
if _PROXY_APP_DIR not in sys.path:
    sys.path.append(_PROXY_APP_DIR)
