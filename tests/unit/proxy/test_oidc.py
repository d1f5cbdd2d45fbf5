"""OIDC callers, against a real issuer on loopback (local/oidc_issuer.py) publishing discovery
and a JWKS with keys the test makes; the proxy fetches them as it would GitHub's."""

import base64
import hashlib
import hmac
import json
import time

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from local import fixed_credentials
from local.oidc_issuer import LocalIssuer
from mlflow_proxy import oidc
from mlflow_proxy.callers import TokenFormatError, parse_tokens
from mlflow_proxy.errors import IssuerUnavailable, Unauthenticated
from proxy_support import READER_TOKEN, TOKENS_JSON, WRITER, WRITER_TOKEN

AUDIENCE = fixed_credentials.OIDC_AUDIENCE
CREATE_RUN = "/api/2.0/mlflow/runs/create"
SEARCH_RUNS = "/api/2.0/mlflow/runs/search"
# GitHub Actions' claims for demo-org/demo-repo's main branch; the issuer entry's rules admit
# them read-write, and other refs of demo-org's repositories read-only.
MAIN = fixed_credentials.OIDC_CLAIMS
issuer_entry = fixed_credentials.oidc_issuer


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict, claims: dict, sign=lambda signing_input: b"") -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def issuer():
    with LocalIssuer() as local_issuer:
        yield local_issuer


@pytest.fixture
def oidc_proxy(start_proxy, proxy_env, issuer):
    document = json.loads(TOKENS_JSON) + [issuer_entry(issuer.url)]
    return start_proxy({**proxy_env, "MLFLOW_PROXY_TOKENS": json.dumps(document)})


def test_a_token_of_a_trusted_issuer_is_accepted_and_named_by_its_rule(
    oidc_proxy, issuer, upstream, proxy_log
):
    token = issuer.mint(MAIN, audience=AUDIENCE)
    response = requests.post(oidc_proxy + CREATE_RUN, headers=bearer(token), json={})
    assert response.status_code == 200, response.text
    assert upstream.last.header("Authorization").startswith("AWS4-HMAC-SHA256")
    assert "github:demo-org/demo-repo@refs/heads/main" in proxy_log.access_lines(1)[0]
    assert token not in proxy_log.text


def test_the_jwt_may_come_as_the_basic_password_and_static_tokens_keep_working(oidc_proxy, issuer):
    token = issuer.mint(MAIN, audience=AUDIENCE)
    basic = "Basic " + base64.b64encode(f"ci:{token}".encode()).decode()
    assert requests.post(oidc_proxy + CREATE_RUN, headers={"Authorization": basic}, json={}).ok
    assert requests.post(oidc_proxy + CREATE_RUN, headers=WRITER, json={}).status_code == 200


def test_the_keys_are_fetched_once_and_reused(oidc_proxy, issuer):
    for _ in range(3):
        token = issuer.mint(MAIN, audience=AUDIENCE)
        assert requests.post(oidc_proxy + SEARCH_RUNS, headers=bearer(token), json={}).ok
    assert issuer.requests["/.well-known/jwks"] == 1
    assert issuer.requests["/.well-known/openid-configuration"] == 1


def refused(url, token, status=401):
    response = requests.post(url + CREATE_RUN, headers=bearer(token), json={})
    assert response.status_code == status, response.text
    body = response.json()
    for secret in (WRITER_TOKEN, READER_TOKEN, token):
        assert secret not in body["message"]
    return body


def test_wrong_audience_is_401(oidc_proxy, issuer, upstream):
    body = refused(oidc_proxy, issuer.mint(MAIN, audience="sts.amazonaws.com"))
    assert body["error_code"] == "UNAUTHENTICATED" and "Audience" in body["message"]
    assert upstream.requests == []


def test_an_untrusted_issuer_is_401(oidc_proxy, upstream):
    with LocalIssuer() as stranger:
        body = refused(oidc_proxy, stranger.mint(MAIN, audience=AUDIENCE))
    assert "not trusted" in body["message"]
    assert stranger.requests["/.well-known/jwks"] == 0  # nothing fetched on its say-so
    assert upstream.requests == []


def test_the_trusted_issuer_named_in_a_token_signed_by_another_key_is_401(oidc_proxy, issuer):
    with LocalIssuer() as stranger:
        forged = stranger.mint({**MAIN, "iss": issuer.url}, audience=AUDIENCE)
    assert "Signature verification failed" in refused(oidc_proxy, forged)["message"]


def test_expired_is_401(oidc_proxy, issuer):
    now = int(time.time())
    token = issuer.mint({**MAIN, "iat": now - 900, "exp": now - 300}, audience=AUDIENCE)
    assert "expired" in refused(oidc_proxy, token)["message"]


def test_not_yet_valid_is_401(oidc_proxy, issuer):
    token = issuer.mint({**MAIN, "nbf": int(time.time()) + 600}, audience=AUDIENCE)
    assert "not yet valid" in refused(oidc_proxy, token)["message"]


def test_a_token_older_than_the_maximum_age_is_401(oidc_proxy, issuer):
    now = int(time.time())
    token = issuer.mint({**MAIN, "iat": now - 2 * 3600, "exp": now + 300}, audience=AUDIENCE)
    assert "accepts tokens up to 3600 s old" in refused(oidc_proxy, token)["message"]


def test_alg_none_is_401(oidc_proxy, issuer):
    claims = {**MAIN, "iss": issuer.url, "aud": AUDIENCE, "iat": int(time.time()), "exp": int(time.time()) + 300}
    token = hand_made({"alg": "none", "typ": "JWT", "kid": "key-1"}, claims)
    assert "'none' are refused" in refused(oidc_proxy, token)["message"]


def test_hmac_signed_with_the_issuers_public_key_is_401(oidc_proxy, issuer):
    # The classic confusion: the public key, which anyone can fetch, used as an HMAC secret.
    public_pem = issuer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {**MAIN, "iss": issuer.url, "aud": AUDIENCE, "iat": int(time.time()), "exp": int(time.time()) + 300}
    token = hand_made(
        {"alg": "HS256", "typ": "JWT", "kid": "key-1"},
        claims,
        sign=lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
    )
    assert "'HS256' are refused" in refused(oidc_proxy, token)["message"]


def test_a_kid_the_issuer_does_not_publish_is_401(oidc_proxy, issuer):
    issuer.add_key("unpublished", publish=False)
    token = issuer.mint(MAIN, kid="unpublished", audience=AUDIENCE)
    assert "does not publish" in refused(oidc_proxy, token)["message"]


def test_claims_no_rule_admits_are_403(oidc_proxy, issuer, upstream):
    token = issuer.mint({**MAIN, "repository": "other-org/demo-repo"}, audience=AUDIENCE)
    body = refused(oidc_proxy, token, status=403)
    assert body["error_code"] == "PERMISSION_DENIED"
    assert "no rule of this proxy admits it" in body["message"]
    assert "repository='other-org/demo-repo'" in body["message"]
    assert upstream.requests == []


def test_a_read_only_rule_may_read_but_not_write(oidc_proxy, issuer, upstream):
    token = issuer.mint({**MAIN, "ref": "refs/heads/feature"}, audience=AUDIENCE)
    assert requests.post(oidc_proxy + SEARCH_RUNS, headers=bearer(token), json={}).ok
    body = refused(oidc_proxy, token, status=403)
    assert "'github:demo-org/demo-repo' has a read-only token" in body["message"]
    assert len(upstream.requests) == 1


def test_cached_keys_keep_working_while_the_issuer_is_down(oidc_proxy, issuer):
    assert requests.post(oidc_proxy + SEARCH_RUNS, headers=bearer(issuer.mint(MAIN, audience=AUDIENCE)), json={}).ok
    issuer.stop()
    token = issuer.mint(MAIN, audience=AUDIENCE)
    assert requests.post(oidc_proxy + SEARCH_RUNS, headers=bearer(token), json={}).ok


def test_without_cached_keys_a_down_issuer_fails_closed_with_503(oidc_proxy, issuer, upstream):
    issuer.stop()
    body = refused(oidc_proxy, issuer.mint(MAIN, audience=AUDIENCE), status=503)
    assert body["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert issuer.url in body["message"]
    assert upstream.requests == []


def test_the_proxy_starts_while_the_issuer_is_unreachable(start_proxy, proxy_env):
    document = json.loads(TOKENS_JSON) + [issuer_entry("https://127.0.0.1:9")]
    url = start_proxy({**proxy_env, "MLFLOW_PROXY_TOKENS": json.dumps(document)})
    assert requests.post(url + CREATE_RUN, headers=WRITER, json={}).ok


# --- the key cache, with a clock the test turns ----------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def verifier_and_clock(issuer):
    clock = Clock()
    return oidc.Verifier(clock=clock), clock, parse_tokens(json.dumps(issuer_entry(issuer.url))).issuers


def test_an_unknown_kid_refetches_once_then_is_401(verifier_and_clock, issuer):
    verifier, clock, issuers = verifier_and_clock
    verifier.verify(issuer.mint(MAIN, audience=AUDIENCE), issuers)
    assert issuer.requests["/.well-known/jwks"] == 1

    clock.now += oidc.REFETCH_INTERVAL_SECONDS
    issuer.add_key("rotated")  # published: found by the refetch
    verifier.verify(issuer.mint(MAIN, kid="rotated", audience=AUDIENCE), issuers)
    assert issuer.requests["/.well-known/jwks"] == 2

    clock.now += oidc.REFETCH_INTERVAL_SECONDS
    issuer.add_key("never-published", publish=False)
    token = issuer.mint(MAIN, kid="never-published", audience=AUDIENCE)
    for _ in range(3):
        with pytest.raises(Unauthenticated, match="does not publish"):
            verifier.verify(token, issuers)
    assert issuer.requests["/.well-known/jwks"] == 3  # one refetch, not one per request


def test_keys_past_their_refresh_are_used_while_the_issuer_is_down(verifier_and_clock, issuer, proxy_log):
    verifier, clock, issuers = verifier_and_clock
    verifier.verify(issuer.mint(MAIN, audience=AUDIENCE), issuers)
    issuer.stop()
    clock.now += oidc.KEYS_REFRESH_SECONDS
    _, claims = verifier.verify(issuer.mint(MAIN, audience=AUDIENCE), issuers)
    assert claims["repository"] == "demo-org/demo-repo"
    assert "keeping the previous keys" in proxy_log.text


def test_a_cold_start_with_the_issuer_down_retries_only_after_the_interval(verifier_and_clock, issuer):
    verifier, clock, issuers = verifier_and_clock
    issuer.stop()
    token = issuer.mint(MAIN, audience=AUDIENCE)
    for _ in range(2):
        with pytest.raises(IssuerUnavailable):
            verifier.verify(token, issuers)
    issuer.start()
    with pytest.raises(IssuerUnavailable):  # the last attempt was just now
        verifier.verify(token, issuers)
    clock.now += oidc.REFETCH_INTERVAL_SECONDS
    assert verifier.verify(token, issuers)[1]["ref"] == "refs/heads/main"


def test_an_es256_key_verifies(verifier_and_clock, issuer):
    verifier, clock, issuers = verifier_and_clock
    issuer.add_key("ec", alg="ES256")
    assert verifier.verify(issuer.mint(MAIN, kid="ec", audience=AUDIENCE), issuers)


# --- the issuer entries' format --------------------------------------------------------------


@pytest.mark.parametrize(
    "change, complaint",
    [
        ({"issuer": "http://token.actions.githubusercontent.com"}, "not an https:// URL"),
        ({"issuer": "https://issuer.example/?x=1"}, "not an https:// URL"),
        ({"audiences": []}, "needs 'audiences'"),
        ({"rules": []}, "needs 'rules'"),
        ({"rules": [{"claims": {}}]}, "needs 'claims'"),
        ({"rules": [{"claims": {"repository": "*"}}]}, "only '*'"),
        ({"rules": [{"claims": {"repository": ["a", "b"]}}]}, "is a string"),
        ({"rules": [{"claims": {"sub": "x"}, "access": "admin"}]}, "read-write or read-only"),
        ({"rules": [{"claims": {"sub": "x"}, "name": "{sub.__class__}"}]}, "plain claim name"),
        ({"max_token_age_seconds": 0}, "positive integer"),
    ],
)
def test_malformed_issuer_entries_are_refused(change, complaint):
    entry = {**issuer_entry("https://token.actions.githubusercontent.com"), **change}
    with pytest.raises(TokenFormatError, match=complaint.replace("(", r"\(").replace("*", r"\*").replace("?", r"\?")):
        parse_tokens(json.dumps([entry]))


def test_an_issuer_listed_twice_is_refused():
    entry = issuer_entry("https://token.actions.githubusercontent.com")
    with pytest.raises(TokenFormatError, match="listed twice"):
        parse_tokens(json.dumps([entry, entry]))


@pytest.mark.parametrize(
    "pattern, value, matches",
    [
        ("refs/heads/main", "refs/heads/main", True),
        ("refs/heads/main", "refs/heads/main-evil", False),
        ("refs/tags/v*", "refs/tags/v1.2", True),
        ("demo-org/*", "demo-org/a/b", True),
        ("demo-org/*", "Demo-org/a", False),
        ("v?", "v1", True),
        ("v?", "v10", False),
        ("a.b", "aXb", False),
        ("[abc]", "a", False),
    ],
)
def test_claim_wildcards(pattern, value, matches):
    assert bool(oidc.wildcard(pattern).fullmatch(value)) is matches


def test_a_missing_name_claim_shows_as_a_question_mark():
    rule = oidc.Rule(conditions=(), read_only=False, name="gitlab:{project_path}@{ref}")
    assert rule.caller_name({"project_path": "group/project"}) == "gitlab:group/project@?"


def test_a_verified_token_is_remembered_only_while_its_issuer_entry_is_unchanged(
    verifier_and_clock, issuer
):
    verifier, clock, issuers = verifier_and_clock
    token = issuer.mint(MAIN, audience=AUDIENCE)
    _, claims = verifier.verify(token, issuers)
    assert verifier.verify(token, issuers)[1] is claims  # not verified again

    narrowed = {**issuer_entry(issuer.url), "audiences": ["another-proxy"]}
    with pytest.raises(Unauthenticated, match="Audience"):
        verifier.verify(token, parse_tokens(json.dumps(narrowed)).issuers)


def test_times_given_as_numeric_strings_are_read_as_numbers(verifier_and_clock, issuer):
    verifier, _, issuers = verifier_and_clock
    now = int(time.time())
    token = issuer.mint({**MAIN, "iat": str(now), "exp": str(now + 300)}, audience=AUDIENCE)
    assert verifier.verify(token, issuers)[1]["iat"] == str(now)
