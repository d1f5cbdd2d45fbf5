"""The smoke test's checks of the proxy itself, over plain HTTP: what a caller without a valid
token gets, what a read-only token may not do, /health and /ui. Each returns what it saw, or
raises CheckFailed saying what it saw instead."""

import uuid
from urllib.parse import urlsplit

import requests

from smoke.stack import Target

# A call every token may make (a GET), and one only a read-write token may make.
READ_CALL = "/api/2.0/mlflow/experiments/search"
WRITE_CALL = "/api/2.0/mlflow/experiments/create"
TIMEOUT_SECONDS = 30


class CheckFailed(AssertionError):
    pass


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def describe(response: requests.Response) -> str:
    return f"{response.status_code} {response.text[:120]!r}"


def health(target: Target) -> str:
    response = requests.get(target.url + "/health", timeout=TIMEOUT_SECONDS)
    if response.status_code != 200:
        raise CheckFailed(f"/health answered {describe(response)}")
    return f"200 {response.text.strip()[:60]}"


def expect_refused(response: requests.Response, status: int, error_code: str) -> str:
    """The proxy's own refusals are MLflow-shaped JSON with the right status."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != status or body.get("error_code") != error_code:
        raise CheckFailed(f"expected {status} {error_code}, got {describe(response)}")
    return f"{status} {error_code}"


def no_token_is_refused(target: Target) -> str:
    response = requests.get(target.url + READ_CALL, params={"max_results": 1}, timeout=TIMEOUT_SECONDS)
    seen = expect_refused(response, 401, "UNAUTHENTICATED")
    if "WWW-Authenticate" not in response.headers:
        raise CheckFailed("401 without a WWW-Authenticate header")
    return seen + ", with WWW-Authenticate"


def wrong_token_is_refused(target: Target) -> str:
    response = requests.get(
        target.url + READ_CALL,
        params={"max_results": 1},
        headers=bearer("smoke-test-" + uuid.uuid4().hex),
        timeout=TIMEOUT_SECONDS,
    )
    return expect_refused(response, 401, "UNAUTHENTICATED")


def read_only_token_cannot_write(target: Target, label: str) -> str:
    headers = bearer(target.read_only_token)
    read = requests.get(
        target.url + READ_CALL, params={"max_results": 1}, headers=headers, timeout=TIMEOUT_SECONDS
    )
    if read.status_code != 200:
        raise CheckFailed(f"the read-only token could not read: {describe(read)}")
    name = f"{label} read-only write {uuid.uuid4().hex[:8]}"
    write = requests.post(
        target.url + WRITE_CALL, json={"name": name}, headers=headers, timeout=TIMEOUT_SECONDS
    )
    if write.status_code == 200:
        # A write that should have been refused went through: take it back, then fail.
        experiment_id = write.json().get("experiment_id")
        requests.post(
            target.url + "/api/2.0/mlflow/experiments/delete",
            json={"experiment_id": experiment_id},
            headers=bearer(target.token),
            timeout=TIMEOUT_SECONDS,
        )
        raise CheckFailed(f"the read-only token created experiment {name!r} (now deleted)")
    return "reads 200, experiments/create " + expect_refused(write, 403, "PERMISSION_DENIED")


def ui_redirects_to_a_presigned_url(target: Target) -> str:
    response = requests.get(
        target.url + "/ui", headers=bearer(target.token), allow_redirects=False, timeout=TIMEOUT_SECONDS
    )
    location = urlsplit(response.headers.get("Location", ""))
    proxy = urlsplit(target.url)
    if not response.is_redirect or not location.netloc or not location.query:
        raise CheckFailed(f"/ui answered {describe(response)}, Location {response.headers.get('Location')!r}")
    if location.netloc == proxy.netloc:
        raise CheckFailed(f"/ui redirects back to the proxy ({location.path}), not to SageMaker")
    # Never print the presigned URL's query: it is a sign-in token.
    return f"{response.status_code} to {location.scheme}://{location.netloc}{location.path} (signed query)"
