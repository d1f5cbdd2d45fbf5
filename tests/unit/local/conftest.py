"""The emulator served on a loopback port (in a thread) in front of a recording fake MLflow."""

import json

import pytest
from werkzeug.wrappers import Request, Response

from local.sagemaker_emulator import MODES, SageMakerEmulator
from tests.unit.local.signed_wire import serving


class RecordingMlflow:
    """Stands for mlflow server: answers 200 and remembers what reached it."""

    def __init__(self):
        self.received = []

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.received.append(
            {
                "method": request.method,
                "raw_uri": environ.get("REQUEST_URI") or environ.get("RAW_URI"),
                "headers": {name.lower(): value for name, value in request.headers.items()},
                "body": request.get_data(),
            }
        )
        return Response(json.dumps({"ok": True}), mimetype="application/json")(
            environ, start_response
        )


@pytest.fixture(scope="module")
def mlflow_double():
    double = RecordingMlflow()
    with serving(double) as url:
        double.url = url
        yield double


@pytest.fixture(scope="module", params=sorted(MODES))
def mode(request):
    return request.param


@pytest.fixture(scope="module")
def emulator(mode, mlflow_double):
    app = SageMakerEmulator(mode, mlflow_double.url)
    with serving(app) as url:
        app.url = url
        yield app
