"""OIDC callers: ID tokens that CI jobs and workloads get from their platform (GitHub Actions,
GitLab CI, Kubernetes, ...), verified against the keys their issuer publishes, and admitted by
the first of the issuer's rules that their claims match.

The trusted issuers live in the caller document beside the static tokens (callers.py parses it);
docs/oidc-callers.md describes the format and what each claim means. The keys are discovered
from the issuer's `/.well-known/openid-configuration` on first use, never at start-up, so an
unreachable issuer cannot stop the proxy; without keys its tokens get 503, never a pass.
"""

import hashlib
import json
import logging
import re
import string
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional
from urllib.parse import quote, urlsplit

import jwt
import urllib3

from mlflow_proxy.credentials import ClientOnFirstUse
from mlflow_proxy.errors import IssuerUnavailable, PermissionDenied, Unauthenticated

logger = logging.getLogger(__name__)

# Asymmetric only: with an HMAC algorithm the issuer's public key would be the secret.
ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
LEEWAY_SECONDS = 60  # clock skew allowed on exp, nbf and iat
DEFAULT_MAX_TOKEN_AGE_SECONDS = 3600
KEYS_REFRESH_SECONDS = 3600  # keys in use are re-fetched this often (issuers rotate them)
REFETCH_INTERVAL_SECONDS = 60  # an unknown kid or a failed fetch re-fetches at most this often
FETCH_TIMEOUT_SECONDS = 5
MAX_DOCUMENT_BYTES = 1024 * 1024
# A CI job sends one token with every call: verifying it costs ~0.6 ms of CPU (PyJWT's parsing
# more than RSA), remembering it ~2 us. Bounded: cleared when full of unexpired tokens.
MAX_REMEMBERED_TOKENS = 4096
# http:// is accepted for these hosts only: the tests' and the demo's issuer on loopback. A
# token or a key fetched in clear text can only come from this machine.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_CLAIM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_url(url) -> str:
    """An issuer's (or its JWKS's) URL: https://, or http:// on loopback; raises ValueError."""
    parts = urlsplit(url) if isinstance(url, str) else None
    secure = parts is not None and parts.scheme == "https" and bool(parts.hostname)
    loopback = parts is not None and parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
    if not (secure or loopback) or parts.query or parts.fragment:
        raise ValueError(
            f"{url!r} is not an https:// URL (http:// is accepted only for a loopback "
            "issuer: 127.0.0.1, localhost, [::1])"
        )
    return url


def wildcard(pattern: str) -> re.Pattern:
    """`*` matches any run of characters (`/` included), `?` one character; the rest is literal."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def name_fields(template: str) -> list[str]:
    """The claims a caller-name template such as `github:{repository}@{ref}` uses."""
    fields = []
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if not _CLAIM_NAME.match(field) or spec or conversion:
            raise ValueError(f"{{{field}}} in {template!r} is not a plain claim name")
        fields.append(field)
    return fields


@dataclass(frozen=True)
class Rule:
    conditions: tuple[tuple[str, re.Pattern], ...]  # (claim, pattern): all must match
    read_only: bool
    name: str  # the caller-name template

    def matches(self, claims: Mapping) -> bool:
        return all(
            isinstance(claims.get(claim), str) and pattern.fullmatch(claims[claim])
            for claim, pattern in self.conditions
        )

    def caller_name(self, claims: Mapping) -> str:
        def value(field):
            claim = claims.get(field)
            # Quoted: a claim cannot break the access log's line or its fields.
            return quote(claim, safe="/:@.-_+=~") if isinstance(claim, str) else "?"

        return "".join(
            literal + ("" if field is None else value(field))
            for literal, field, _, _ in string.Formatter().parse(self.name)
        )


@dataclass(frozen=True)
class TrustedIssuer:
    url: str  # exactly the tokens' `iss`
    audiences: tuple[str, ...]
    rules: tuple[Rule, ...]
    max_token_age_seconds: int = DEFAULT_MAX_TOKEN_AGE_SECONDS

    def admitting_rule(self, claims: Mapping) -> Rule:
        """The first rule the claims match; PermissionDenied when none does."""
        for rule in self.rules:
            if rule.matches(claims):
                return rule
        tested = sorted({claim for rule in self.rules for claim, _ in rule.conditions})
        shown = ", ".join(f"{claim}={claims.get(claim)!r}" for claim in tested)
        raise PermissionDenied(
            f"The OIDC token from {self.url} is valid, but no rule of this proxy admits it "
            f"({shown})."
        )


def looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


def _fetch_json(pool: ClientOnFirstUse, url: str) -> dict:
    # No redirects (a redirect could leave https) and no retries: the caller retries, later.
    response = pool.get().request(
        "GET", url, headers={"Accept": "application/json"}, redirect=False, preload_content=False
    )
    try:
        if response.status != 200:
            raise ValueError(f"{url} answered HTTP {response.status}")
        body = response.read(MAX_DOCUMENT_BYTES + 1)
        if len(body) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError(f"{url} answered JSON that is not an object")
        return document
    finally:
        response.release_conn()


class IssuerKeys:
    """The signing keys one issuer publishes, by kid: fetched on first use, re-fetched every
    KEYS_REFRESH_SECONDS and on an unknown kid, at most once per REFETCH_INTERVAL_SECONDS. A
    failed fetch keeps the keys we have; with none, the issuer's tokens get 503."""

    def __init__(self, issuer_url: str, fetch_json: Callable[[str], dict], clock):
        self._url = issuer_url
        self._fetch_json = fetch_json
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: Optional[dict] = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._failure = ""

    def key(self, kid: str) -> jwt.PyJWK:
        keys = self._keys
        if keys is None or kid not in keys:
            keys = self._refetch(wait=True)
        elif self._clock() - self._fetched_at >= KEYS_REFRESH_SECONDS:
            keys = self._refetch(wait=False)  # due, but the keys we have still serve
        if keys is None:
            raise IssuerUnavailable(
                f"The signing keys of {self._url} cannot be fetched ({self._failure}); "
                "try again shortly."
            )
        if kid not in keys:
            raise Unauthenticated(
                f"The OIDC token is signed with a key ({kid!r}) that {self._url} does not publish."
            )
        return keys[kid]

    def _refetch(self, wait: bool) -> Optional[dict]:
        if not self._lock.acquire(blocking=wait):
            return self._keys
        try:
            if self._clock() - self._attempted_at >= REFETCH_INTERVAL_SECONDS:
                self._attempted_at = self._clock()
                try:
                    self._keys = self._fetch()
                    self._fetched_at = self._attempted_at
                except Exception as error:  # noqa: BLE001 - any failure keeps what we have
                    self._failure = str(error)
                    logger.warning(
                        "Could not fetch the signing keys of %s (%s): %s",
                        self._url,
                        "keeping the previous keys" if self._keys else "none yet",
                        error,
                    )
            return self._keys
        finally:
            self._lock.release()

    def _fetch(self) -> dict:
        discovery = self._fetch_json(self._url.rstrip("/") + "/.well-known/openid-configuration")
        if discovery.get("issuer") != self._url:
            raise ValueError(f"its discovery document names issuer {discovery.get('issuer')!r}")
        key_set = jwt.PyJWKSet.from_dict(self._fetch_json(check_url(discovery.get("jwks_uri"))))
        keys = {
            key.key_id: key
            for key in key_set.keys
            if key.key_id
            and key.algorithm_name in ALGORITHMS
            and key.public_key_use in (None, "sig")
        }
        if not keys:
            raise ValueError("it publishes no asymmetric signing key with a kid")
        return keys


class Verifier:
    """Verifies OIDC ID tokens against the trusted issuers; keeps each issuer's keys across
    re-reads of the caller document."""

    def __init__(self, fetch_json: Optional[Callable[[str], dict]] = None, clock=time.monotonic):
        if fetch_json is None:
            timeout = urllib3.Timeout(total=FETCH_TIMEOUT_SECONDS)
            pool = ClientOnFirstUse(lambda: urllib3.PoolManager(timeout=timeout, retries=False))
            fetch_json = lambda url: _fetch_json(pool, url)  # noqa: E731
        self._fetch_json = fetch_json
        self._clock = clock
        self._keys: dict[str, IssuerKeys] = {}
        self._keys_lock = threading.Lock()
        # SHA-256 of a verified token -> (its issuer as then configured, claims, valid until)
        self._verified: dict[bytes, tuple[TrustedIssuer, dict, float]] = {}

    def verify(self, token: str, issuers: tuple[TrustedIssuer, ...]) -> tuple[TrustedIssuer, dict]:
        """The issuer and the verified claims; raises Unauthenticated or IssuerUnavailable."""
        digest = hashlib.sha256(token.encode()).digest()
        remembered = self._verified.get(digest)
        # Only while the issuer's entry is unchanged: a re-read document may have narrowed it.
        if remembered is not None and remembered[0] in issuers and time.time() < remembered[2]:
            return remembered[0], remembered[1]
        issuer, claims = self._verify(token, issuers)
        if len(self._verified) >= MAX_REMEMBERED_TOKENS:
            self._verified.clear()
        # PyJWT has checked that both read as numbers (a string "123" does too).
        valid_until = min(float(claims["exp"]), float(claims["iat"]) + issuer.max_token_age_seconds)
        self._verified[digest] = (issuer, claims, valid_until)
        return issuer, claims

    def _verify(self, token: str, issuers: tuple[TrustedIssuer, ...]) -> tuple[TrustedIssuer, dict]:
        try:
            unverified = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
            header, iss = unverified["header"], unverified["payload"].get("iss")
        except jwt.PyJWTError:
            raise Unauthenticated(
                "The token is neither a known token nor a well-formed JWT."
            ) from None
        issuer = next((issuer for issuer in issuers if issuer.url == iss), None)
        if issuer is None:
            raise Unauthenticated(f"The token's issuer {str(iss)[:200]!r} is not trusted here.")
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise Unauthenticated(
                f"OIDC tokens signed with {str(alg)[:20]!r} are refused; accepted: "
                f"{', '.join(ALGORITHMS)}."
            )
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise Unauthenticated("The OIDC token names no signing key (kid).")
        try:
            claims = jwt.decode(
                token,
                self._issuer_keys(issuer.url).key(kid),
                algorithms=[alg],
                audience=list(issuer.audiences),
                issuer=issuer.url,
                leeway=LEEWAY_SECONDS,
                options={
                    "require": ["exp", "iat", "iss", "aud"],
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as error:
            raise Unauthenticated(
                f"The OIDC token from {issuer.url} is refused: {error}."
            ) from None
        age = time.time() - float(claims["iat"])
        if age > issuer.max_token_age_seconds + LEEWAY_SECONDS:
            raise Unauthenticated(
                f"The OIDC token from {issuer.url} was issued {age:.0f} s ago; this proxy "
                f"accepts tokens up to {issuer.max_token_age_seconds} s old."
            )
        return issuer, claims

    def _issuer_keys(self, url: str) -> IssuerKeys:
        with self._keys_lock:
            if url not in self._keys:
                self._keys[url] = IssuerKeys(url, self._fetch_json, self._clock)
            return self._keys[url]
