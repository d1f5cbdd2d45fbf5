"""The app under real gunicorn, started the way the instances and local/ start it."""

import signal
import socket
import threading
import time

import pytest
import requests
from werkzeug.wrappers import Response

from proxy_support import TOKENS_JSON, TRACKING_ARN, WRITER, WRITER_TOKEN
from proxy_support import gunicorn_environment as _environment

pytestmark = pytest.mark.slow

def test_serves_health_and_forwards_signed_requests(run_gunicorn, upstream):
    server = run_gunicorn(
        _environment(
            SM_MLFLOW_RESOURCE_ARN=TRACKING_ARN,
            SM_MLFLOW_ENDPOINT_URL=upstream.url,
            MLFLOW_PROXY_TOKENS=TOKENS_JSON,
        )
    )
    listening = server.wait_for_line(r"Listening at: (http://127\.0\.0\.1:\d+)")
    assert listening, "".join(server.lines)
    url = listening[1]

    # Connection: close, because gunicorn's graceful shutdown waits (up to graceful_timeout)
    # for idle keep-alive connections, and this test ends with one.
    close = {"Connection": "close"}
    assert requests.get(url + "/health", headers=close).json() == {"status": "ok"}
    response = requests.get(
        url + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=my+exp",
        headers={**WRITER, **close},
    )
    assert response.status_code == 200, response.text
    assert upstream.last.raw_uri.endswith("experiment_name=my%20exp")
    assert upstream.last.header("Authorization").startswith("AWS4-HMAC-SHA256 ")
    # A bare JSON object, as CloudWatch Logs Insights wants it.
    access_line = r'^\{"client": "127.0.0.1", "caller": "ci", "method": "GET", "path": "/api/2.0/mlflow/experiments/get-by-name", "status": 200, .*\}$'
    assert server.wait_for_line(access_line), "".join(server.lines)

    # Long query strings: up to gunicorn's bound they are forwarded; past it, MLflow-shaped JSON.
    runs = "/api/2.0/mlflow/runs/get?" + "&".join(f"run_id={index:032d}" for index in range(180))
    assert 7000 < len(runs) < 8100
    assert requests.get(url + runs, headers={**WRITER, **close}).status_code == 200
    assert upstream.last.raw_uri == runs
    too_long = requests.get(url + runs + "&run_id=x" * 200, headers={**WRITER, **close})
    assert too_long.status_code == 400
    assert too_long.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "longer than 8190 bytes" in too_long.json()["message"]

    assert server.stop() == 0, "".join(server.lines)  # SIGTERM is a graceful shutdown
    assert WRITER_TOKEN not in "".join(server.lines)


@pytest.mark.parametrize(
    "variables, named",
    [
        ({}, "SM_MLFLOW_RESOURCE_ARN"),
        ({"SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN}, "MLFLOW_PROXY_TOKENS_SECRET_ARN"),
        (
            {
                "SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN,
                "MLFLOW_PROXY_TOKENS": TOKENS_JSON,
                "MLFLOW_PROXY_READ_TIMEOUT_SECONDS": "forever",
            },
            "MLFLOW_PROXY_READ_TIMEOUT_SECONDS",
        ),
        (
            {
                "SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN,
                "MLFLOW_PROXY_TOKENS": TOKENS_JSON,
                "MLFLOW_PROXY_HEADER_TIMEOUT_SECONDS": "0",
            },
            "MLFLOW_PROXY_HEADER_TIMEOUT_SECONDS",
        ),
        (
            {
                "SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN,
                "MLFLOW_PROXY_TOKENS": TOKENS_JSON,
                "MLFLOW_PROXY_BODY_READ_TIMEOUT_SECONDS": "soon",
            },
            "MLFLOW_PROXY_BODY_READ_TIMEOUT_SECONDS",
        ),
        (
            {
                "SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN,
                "MLFLOW_PROXY_TOKENS": TOKENS_JSON,
                "MLFLOW_PROXY_CONNECTIONS": "many",
            },
            "MLFLOW_PROXY_CONNECTIONS",
        ),
        (
            {
                "SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN,
                "MLFLOW_PROXY_TOKENS": TOKENS_JSON,
                "MLFLOW_PROXY_HEALTH_PORT": "70000",
            },
            "MLFLOW_PROXY_HEALTH_PORT",
        ),
    ],
)
def test_bad_configuration_stops_gunicorn_with_the_variable_named(run_gunicorn, variables, named):
    server = run_gunicorn(_environment(**variables))
    returncode = server.process.wait(timeout=60)
    server.stop()
    assert returncode != 0
    assert named in "".join(server.lines)
    assert not any("Booting worker" in line for line in server.lines)


def test_connections_above_the_pools_stop_gunicorn_with_the_variable_named(run_gunicorn):
    """--worker-connections (or GUNICORN_CMD_ARGS) above MLFLOW_PROXY_CONNECTIONS, the pools' size, would
    have the extra calls open and drop connections to SageMaker: no worker starts."""
    server = run_gunicorn(
        _environment(
            SM_MLFLOW_RESOURCE_ARN=TRACKING_ARN,
            MLFLOW_PROXY_TOKENS=TOKENS_JSON,
            MLFLOW_PROXY_CONNECTIONS="4",
        ),
        "--worker-connections",
        "8",
    )
    returncode = server.process.wait(timeout=60)
    server.stop()
    assert returncode != 0
    assert "set MLFLOW_PROXY_CONNECTIONS=8" in "".join(server.lines)
    assert not any("Booting worker" in line for line in server.lines)


def test_a_request_in_flight_when_gunicorn_is_stopped_still_completes(run_gunicorn, upstream):
    """SIGTERM (systemctl stop, the instance's shutdown) is a graceful stop: the shipped
    gunicorn.conf.py lets a request in flight finish (for up to graceful_timeout, docs/rollouts.md)."""
    release = threading.Event()

    def slow(request):
        release.wait(timeout=30)
        return Response('{"experiment": {}}', content_type="application/json")

    upstream.respond = slow
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        health_port = probe.getsockname()[1]
    health = f"http://127.0.0.1:{health_port}/health"
    server = run_gunicorn(_environment(SM_MLFLOW_RESOURCE_ARN=TRACKING_ARN, SM_MLFLOW_ENDPOINT_URL=upstream.url,
                                       MLFLOW_PROXY_TOKENS=TOKENS_JSON,
                                       MLFLOW_PROXY_HEALTH_PORT=str(health_port)))
    listening = server.wait_for_line(r"Listening at: (http://127\.0\.0\.1:\d+)")
    assert listening, "".join(server.lines)
    answers = []
    client = threading.Thread(target=lambda: answers.append(requests.get(
        listening[1] + "/api/2.0/mlflow/experiments/get?experiment_id=0", headers=WRITER, timeout=60)))
    client.start()
    deadline = time.monotonic() + 30
    while not upstream.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.requests, "the request never reached the upstream"
    assert requests.get(health, timeout=5).status_code == 200

    server.process.send_signal(signal.SIGTERM)
    assert server.wait_for_line(r"Handling signal: term"), "".join(server.lines)
    time.sleep(1)  # the worker has its SIGTERM too; the request is still held upstream
    assert server.process.poll() is None, "gunicorn stopped with a request in flight"
    # The load balancer's check says so while the request finishes (mlflow_proxy/master_health.py).
    stopping = requests.get(health, timeout=5)
    assert stopping.status_code == 503
    assert stopping.json() == {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "the proxy is stopping"}
    release.set()
    client.join(timeout=60)

    assert answers and answers[0].status_code == 200, "".join(server.lines)
    assert server.process.wait(timeout=30) == 0
