import base64
import hashlib
import json
import os
from datetime import datetime, timedelta, timezone

import boto3
import pytest
import requests

from mlflow_proxy import create_app
from mlflow_proxy import tokens as tokens_cli
from mlflow_proxy.callers import (
    SecretTokens,
    TokenFormatError,
    find_token,
    parse_tokens,
    presented_token,
)
from mlflow_proxy.config import ConfigError
from proxy_support import (
    READER,
    READER_TOKEN,
    TRACKING_ARN,
    WRITER,
    WRITER_TOKEN,
    moto_server,
)

SEARCH_RUNS = "/api/2.0/mlflow/runs/search"
CREATE_RUN = "/api/2.0/mlflow/runs/create"


def _basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# --- through the app -------------------------------------------------------------------------


def test_bearer_token_is_accepted(proxy, upstream):
    assert requests.post(proxy + CREATE_RUN, headers=WRITER, json={}).status_code == 200
    assert len(upstream.requests) == 1


def test_basic_auth_password_is_the_token(proxy, upstream):
    response = requests.post(proxy + CREATE_RUN, headers=_basic("anyone", WRITER_TOKEN), json={})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789abcdef"},
        {"Authorization": f"Bearer {WRITER_TOKEN}x"},
        _basic(WRITER_TOKEN, "wrong"),  # the token as user name is not the token
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": f"Token {WRITER_TOKEN}"},
    ],
    ids=["missing", "wrong", "extended", "token-as-user", "malformed-basic", "other-scheme"],
)
def test_missing_or_wrong_token_is_401_with_a_basic_challenge(proxy, upstream, headers):
    response = requests.get(proxy + "/api/2.0/mlflow/runs/get", headers=headers)
    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHENTICATED"
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert upstream.requests == []


def test_read_only_token_cannot_write(proxy, upstream):
    for method, path in [
        ("POST", CREATE_RUN),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete"),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/x.txt"),
        ("PATCH", "/ajax-api/2.0/mlflow/registered-models/update"),
        ("POST", "/api/3.0/mlflow/review-queues/get-or-create-user"),
        ("POST", "/v1/traces"),
        ("POST", "/ajax-api/2.0/mlflow/upload-artifact?run_uuid=1&path=a.txt"),
    ]:
        response = requests.request(method, proxy + path, headers=READER, json={})
        assert response.status_code == 403, (method, path)
        assert response.json()["error_code"] == "PERMISSION_DENIED"
    assert upstream.requests == []


def test_read_only_token_may_read_and_search(proxy, upstream):
    for method, path in [
        ("GET", "/api/2.0/mlflow/runs/get?run_id=1"),
        ("POST", SEARCH_RUNS),
        ("POST", "/ajax-api/2.0/mlflow/experiments/search"),
        ("POST", "/api/3.0/mlflow/traces/search"),
        ("POST", "/graphql"),
        ("POST", "/ajax-api/graphql"),
        ("GET", "/version"),
        ("GET", "/get-artifact?run_uuid=1&path=a.txt"),
    ]:
        response = requests.request(method, proxy + path, headers=READER, json={})
        assert response.status_code == 200, (method, path)
    assert len(upstream.requests) == 8


def test_open_proxy_needs_no_token(start_proxy, proxy_env, upstream):
    environ = {k: v for k, v in proxy_env.items() if k != "MLFLOW_PROXY_TOKENS"}
    url = start_proxy({**environ, "MLFLOW_PROXY_AUTH": "none"})
    assert requests.post(url + CREATE_RUN, json={}).status_code == 200


# --- the pieces ------------------------------------------------------------------------------


def test_a_single_object_is_accepted_and_access_defaults_to_read_write():
    table = parse_tokens(json.dumps({"name": "admin", "token": WRITER_TOKEN}))
    caller = find_token(table, WRITER_TOKEN).caller
    assert caller.name == "admin" and not caller.read_only


def test_tokens_are_found_by_value_and_unknown_ones_are_not():
    table = parse_tokens(
        json.dumps(
            [
                {"name": "ci", "token": WRITER_TOKEN},
                {"name": "dash", "token": READER_TOKEN, "access": "read-only"},
            ]
        )
    )
    assert find_token(table, WRITER_TOKEN).caller.name == "ci"
    assert find_token(table, READER_TOKEN).caller.read_only
    assert find_token(table, "nobody-0123456789abcdef") is None


@pytest.mark.parametrize(
    "document, complaint",
    [
        ("{not json", "not valid JSON"),
        ("[]", "empty"),
        ('["x"]', "entry 1"),
        ('{"token": "0123456789abcdef0"}', "'name'"),
        ('{"name": "a", "token": "short-secret"}', "at least 16"),
        ('{"name": "a", "token": "sha256:abc"}', "at least 16"),
        ('{"name": "a", "token": "0123456789abcdef0", "expires": "2027-01-31"}', "time zone"),
        ('{"name": "a", "token": "0123456789abcdef0", "expires": "soon"}', "ISO 8601"),
        ('{"name": "a", "token": "0123456789abcdef0", "access": "admin"}', "read-only"),
        (
            '[{"name": "a", "token": "0123456789abcdef0"}, {"name": "a", "token": "zz3456789abcdef0"}]',
            "used twice",
        ),
        (
            '[{"name": "a", "token": "0123456789abcdef0"}, {"name": "b", "token": "0123456789abcdef0"}]',
            "share one token",
        ),
    ],
)
def test_malformed_tokens_are_refused_without_quoting_them(document, complaint):
    with pytest.raises(TokenFormatError) as error:
        parse_tokens(document)
    assert complaint in str(error.value)
    for secret in ("0123456789abcdef0", "zz3456789abcdef0", "short-secret"):
        assert secret not in str(error.value)


@pytest.mark.parametrize(
    "header, token",
    [
        (f"Bearer {WRITER_TOKEN}", WRITER_TOKEN),
        ("Bearer abc=def==", "abc=def=="),
        ("Basic " + base64.b64encode(b"user:pa:ss").decode(), "pa:ss"),
        ("Basic " + base64.b64encode(b"user:").decode(), None),
        (None, None),
        ("Bearer ", None),
    ],
)
def test_presented_token(header, token):
    assert presented_token(header) == token


# --- tokens from Secrets Manager (moto_server stands in for it) ------------------------------


@pytest.fixture(scope="module")
def secrets_manager():
    with moto_server() as url:
        yield url


@pytest.fixture
def secret(secrets_manager, aws_env):
    aws_env.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", secrets_manager)
    client = boto3.client("secretsmanager", region_name="us-west-2")
    name = f"proxy-tokens-{os.urandom(4).hex()}"
    arn = client.create_secret(
        Name=name, SecretString=json.dumps({"name": "admin", "token": WRITER_TOKEN})
    )["ARN"]
    return client, arn


def _secret_tokens(arn, clock):
    return SecretTokens(
        arn,
        create_client=lambda: boto3.client("secretsmanager", region_name="us-west-2"),
        refresh_seconds=300,
        clock=clock,
    )


def test_secret_rotation_takes_effect_after_the_refresh_interval(secret):
    client, arn = secret
    now = [1000.0]
    tokens = _secret_tokens(arn, lambda: now[0])
    assert find_token(tokens.current(), WRITER_TOKEN).caller.name == "admin"

    client.put_secret_value(
        SecretId=arn, SecretString=json.dumps({"name": "admin", "token": READER_TOKEN})
    )
    now[0] += 299
    assert find_token(tokens.current(), WRITER_TOKEN).caller.name == "admin"  # cached until due
    now[0] += 2
    assert find_token(tokens.current(), WRITER_TOKEN) is None
    assert find_token(tokens.current(), READER_TOKEN).caller.name == "admin"


def test_a_failed_refresh_keeps_the_last_good_tokens(secret, proxy_log):
    client, arn = secret
    now = [1000.0]
    tokens = _secret_tokens(arn, lambda: now[0])
    client.put_secret_value(SecretId=arn, SecretString="{broken")
    now[0] += 301
    assert find_token(tokens.current(), WRITER_TOKEN).caller.name == "admin"
    assert "keeping the previous set" in proxy_log.text
    assert WRITER_TOKEN not in proxy_log.text


def test_the_app_reads_tokens_from_the_secret(secret, start_proxy, proxy_env, upstream):
    _, arn = secret
    environ = {k: v for k, v in proxy_env.items() if k != "MLFLOW_PROXY_TOKENS"}
    url = start_proxy({**environ, "MLFLOW_PROXY_TOKENS_SECRET_ARN": arn})
    assert requests.post(url + CREATE_RUN, headers=WRITER, json={}).status_code == 200
    assert requests.post(url + CREATE_RUN, headers=READER, json={}).status_code == 401


def test_a_secret_that_cannot_be_read_at_start_up_stops_it(secret):
    _, arn = secret
    with pytest.raises(ConfigError) as error:
        create_app(
            {
                "SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN,
                "MLFLOW_PROXY_TOKENS_SECRET_ARN": arn.replace("proxy-tokens", "missing"),
            }
        )
    assert "MLFLOW_PROXY_TOKENS_SECRET_ARN" in str(error.value)


# --- hashed tokens, expiry, and `python -m mlflow_proxy.tokens` ------------------------------


def _sha256(token):
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def test_a_token_kept_as_its_sha256_is_accepted(start_proxy, proxy_env, upstream):
    document = [{"name": "hashed", "token": _sha256(WRITER_TOKEN)}]
    url = start_proxy({**proxy_env, "MLFLOW_PROXY_TOKENS": json.dumps(document)})
    assert requests.post(url + CREATE_RUN, headers=WRITER, json={}).status_code == 200
    # The digest itself is not a token.
    digest_as_token = {"Authorization": f"Bearer {_sha256(WRITER_TOKEN)}"}
    assert requests.post(url + CREATE_RUN, headers=digest_as_token, json={}).status_code == 401


def test_an_expired_token_is_401_and_one_still_valid_is_not(start_proxy, proxy_env, upstream):
    now = datetime.now(timezone.utc)
    document = [
        {"name": "old", "token": WRITER_TOKEN, "expires": (now - timedelta(minutes=1)).isoformat()},
        {"name": "new", "token": READER_TOKEN, "expires": (now + timedelta(days=1)).isoformat()},
    ]
    url = start_proxy({**proxy_env, "MLFLOW_PROXY_TOKENS": json.dumps(document)})
    response = requests.post(url + CREATE_RUN, headers=WRITER, json={})
    assert response.status_code == 401
    assert "'old' expired at" in response.json()["message"]
    assert requests.post(url + CREATE_RUN, headers=READER, json={}).status_code == 200


def test_tokens_add_without_a_secret_prints_the_token_once_and_an_entry_holding_its_hash(capsys):
    assert tokens_cli.main(["add", "--name", "ci", "--read-only"]) == 0
    token, entry_line = capsys.readouterr().out.splitlines()
    entry = json.loads(entry_line)
    assert entry == {"name": "ci", "token": _sha256(token), "access": "read-only"}
    caller = find_token(parse_tokens(entry_line), token).caller
    assert caller.name == "ci" and caller.read_only


def test_tokens_add_stores_the_hash_in_the_secret_and_the_proxy_accepts_the_token(
    secret, capsys, start_proxy, proxy_env, upstream
):
    client, arn = secret
    assert tokens_cli.main(["add", "--name", "ci", "--expires", "2099-01-01T00:00:00Z", "--secret-arn", arn]) == 0
    token = capsys.readouterr().out.strip()
    stored = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
    assert [entry["name"] for entry in stored] == ["admin", "ci"]
    assert stored[1]["token"] == _sha256(token) and token not in json.dumps(stored)

    environ = {k: v for k, v in proxy_env.items() if k != "MLFLOW_PROXY_TOKENS"}
    url = start_proxy({**environ, "MLFLOW_PROXY_TOKENS_SECRET_ARN": arn})
    assert requests.post(url + CREATE_RUN, headers={"Authorization": f"Bearer {token}"}, json={}).ok
    assert requests.post(url + CREATE_RUN, headers=WRITER, json={}).ok  # admin's is kept


def test_tokens_add_refuses_a_name_in_use_and_writes_nothing(secret, capsys):
    client, arn = secret
    before = client.get_secret_value(SecretId=arn)["SecretString"]
    assert tokens_cli.main(["add", "--name", "admin", "--secret-arn", arn]) == 2
    assert "used twice" in capsys.readouterr().err
    assert client.get_secret_value(SecretId=arn)["SecretString"] == before
