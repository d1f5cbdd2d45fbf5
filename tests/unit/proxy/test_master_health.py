"""The load balancer's health check on MLFLOW_PROXY_HEALTH_PORT, answered by the gunicorn master
(mlflow_proxy/master_health.py): under real gunicorn, with its workers stopped and restarted."""

import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
import requests

from proxy_support import TOKENS_JSON, TRACKING_ARN
from proxy_support import gunicorn_environment as _environment

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _with_health_port(port: int) -> dict:
    return _environment(
        SM_MLFLOW_RESOURCE_ARN=TRACKING_ARN,
        MLFLOW_PROXY_TOKENS=TOKENS_JSON,
        MLFLOW_PROXY_HEALTH_PORT=str(port),
    )


def _worker_pids(server, count: int) -> list:
    pids = []
    for _ in range(count):
        booted = server.wait_for_line(r"Booting worker with pid: (\d+)")
        assert booted, "".join(server.lines)
        pids.append(int(booted[1]))
    return pids


def _socket_inodes(pid: int) -> set:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            inodes.add(match[1])
    return inodes


def _holds_socket(pid: int, inode: str) -> bool:
    """Whether `pid` holds the socket, once it is past post_fork (gunicorn logs "Booting worker"
    just before it); False for a process that has exited."""
    deadline = time.monotonic() + 10
    while True:
        try:
            held = inode in _socket_inodes(pid)
        except FileNotFoundError:
            return False
        if not held or time.monotonic() > deadline:
            return held
        time.sleep(0.1)


def _listening() -> list:
    """The fields of /proc/net/tcp's listening sockets (state 0A)."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return [fields for fields in rows if fields[3] == "0A"]


def _listening_inode(port: int) -> str:
    """The inode of the loopback socket listening on `port`."""
    for fields in _listening():
        if fields[1] == f"0100007F:{port:04X}":
            return fields[9]
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def test_the_master_answers_from_the_workers_heartbeats(run_gunicorn):
    port = _free_port()
    server = run_gunicorn(
        _with_health_port(port),
        "--workers",
        "2",
        # A worker silent for half of this is reported; for all of it, killed and replaced.
        "--timeout",
        "6",
    )
    url = server.url()
    pids = _worker_pids(server, 2)
    health = f"http://127.0.0.1:{port}/health"
    close = {"Connection": "close"}

    answer = requests.get(health, headers=close, timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "workers": 2}
    assert requests.head(health, headers=close, timeout=5).status_code == 200
    refused = requests.post(health, headers=close, timeout=5)
    assert refused.status_code == 405 and refused.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    elsewhere = requests.get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/list", timeout=5)
    assert elsewhere.status_code == 404 and elsewhere.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    # The proxy's own /health is unchanged.
    assert requests.get(url + "/health", headers=close, timeout=5).json() == {"status": "ok"}

    # Only the master holds the health port: the workers closed their inherited copy.
    listener = _listening_inode(port)
    assert listener in _socket_inodes(server.process.pid)
    for pid in pids:
        assert not _holds_socket(pid, listener)

    # Workers that stop running (SIGSTOP: no heartbeat, no accept) are reported within half the
    # timeout, while the proxy's own port cannot answer at all; the master then replaces them.
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(requests.exceptions.Timeout):
            requests.get(url + "/health", headers=close, timeout=1)
        answers = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            started = time.monotonic()
            answer = requests.get(health, headers=close, timeout=2)
            answers.append((answer.status_code, answer.json(), time.monotonic() - started))
            if answer.status_code == 200 and any(status == 503 for status, _, _ in answers):
                break
            time.sleep(0.2)
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    unavailable = [body for status, body, _ in answers if status == 503]
    assert unavailable, answers
    assert unavailable[0]["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert re.search(r"workers silent for over 3 s: \d+ \(\d+ s\)", unavailable[0]["message"])
    assert answers[-1][:2] == (200, {"status": "ok", "workers": 2}), answers
    assert max(seconds for _, _, seconds in answers) < 1, answers
    assert requests.get(url + "/health", headers=close, timeout=5).status_code == 200

    # A reload (systemctl reload: SIGHUP) reads gunicorn.conf.py again and forks new workers:
    # they too leave the health port to the master, which still answers.
    replaced = _worker_pids(server, 2)  # the two forked after the kills above
    os.kill(server.process.pid, signal.SIGHUP)
    reloaded = _worker_pids(server, 2)
    for pid in replaced + reloaded:
        assert not _holds_socket(pid, listener)
    deadline = time.monotonic() + 30
    while (answer := requests.get(health, headers=close, timeout=2)).json().get("workers") != 2:
        assert time.monotonic() < deadline, answer.json()
        time.sleep(0.2)
    assert answer.status_code == 200
    assert _listening_inode(port) in _socket_inodes(server.process.pid)


def test_without_the_variable_no_health_port_is_opened(run_gunicorn):
    server = run_gunicorn(
        _environment(SM_MLFLOW_RESOURCE_ARN=TRACKING_ARN, MLFLOW_PROXY_TOKENS=TOKENS_JSON)
    )
    server.url()
    _worker_pids(server, 1)
    held = _socket_inodes(server.process.pid)
    listening = {fields[1] for fields in _listening() if fields[9] in held}
    assert len(listening) == 1, listening  # the proxy's own port only
    assert not any("Health check on" in line for line in server.lines)


def test_a_health_port_that_cannot_be_listened_on_stops_gunicorn_naming_the_variable(run_gunicorn):
    port = _free_port()
    server = run_gunicorn(
        _with_health_port(port),
        "--bind",
        f"127.0.0.1:{port}",  # the proxy's own port, taken first
    )
    assert server.process.wait(timeout=60) != 0
    server.stop()
    assert re.search(
        rf"MLFLOW_PROXY_HEALTH_PORT={port}: cannot listen on 127\.0\.0\.1:{port} \(Address already in use",
        "".join(server.lines),
    ), "".join(server.lines)
    assert not any("Booting worker" in line for line in server.lines)


def test_callers_that_stall_on_the_health_port_are_let_go(run_gunicorn):
    port = _free_port()
    server = run_gunicorn(
        _with_health_port(port)
    )
    server.url()
    assert server.wait_for_line(r"Health check on 127\.0\.0\.1:"), "".join(server.lines)
    stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    try:
        for connection in stalled:
            connection.sendall(b"GET /hea")
        answer = requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert answer.status_code == 200  # answered beside the stalled ones
        for connection in stalled:
            connection.settimeout(10)
            assert connection.recv(100) == b""  # closed after CALLER_SECONDS, unanswered
    finally:
        for connection in stalled:
            connection.close()
    assert server.stop() == 0
    assert "Traceback" not in "".join(server.lines), "".join(server.lines)


def test_malformed_requests_on_the_health_port_get_mlflow_json_and_a_quiet_log(run_gunicorn):
    port = _free_port()
    server = run_gunicorn(_with_health_port(port))
    server.url()
    assert server.wait_for_line(r"Health check on 127\.0\.0\.1:"), "".join(server.lines)
    for request, status in (
        (b"SECRET-LOOKING-LINE\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nX-Long: " + b"s" * 70000 + b"\r\n\r\n", 400),
        (b"GET /" + b"s" * 20000 + b" HTTP/1.1\r\n\r\n", 414),
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(request)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
        assert json.loads(body)["error_code"] == "MALFORMED_REQUEST"
    assert server.stop() == 0
    log = "".join(server.lines)
    assert log.count("Refused a malformed health check from 127.0.0.1") >= 2, log
    assert "SECRET-LOOKING" not in log and "sss" not in log, log
