"""Who is calling: the caller document (static tokens and trusted OIDC issuers, inline or from
Secrets Manager), how a request is authenticated with it, and what each caller may do."""

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional

from werkzeug.datastructures import Authorization

from mlflow_proxy import oidc
from mlflow_proxy.errors import PermissionDenied, Unauthenticated
from mlflow_proxy.read_endpoints import READ_ONLY_POST_PATHS
from mlflow_proxy.routes import api_path

logger = logging.getLogger(__name__)

READ_WRITE = "read-write"
READ_ONLY = "read-only"
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenFormatError(ValueError):
    """The tokens document is malformed; the message never contains a token."""


@dataclass(frozen=True)
class Caller:
    name: str
    read_only: bool

    def may_call(self, method: str, path: str) -> bool:
        if not self.read_only or method in _READ_METHODS:
            return True
        return method == "POST" and api_path(path) in READ_ONLY_POST_PATHS


ANONYMOUS = Caller(name="anonymous", read_only=False)


@dataclass(frozen=True)
class StaticToken:
    digest: bytes = field(repr=False)  # SHA-256 of the token: tokens are kept only as digests
    caller: Caller
    expires: Optional[datetime] = None


@dataclass(frozen=True)
class TokenTable:
    """The caller document, parsed: static tokens and trusted OIDC issuers."""

    tokens: tuple[StaticToken, ...]
    issuers: tuple[oidc.TrustedIssuer, ...] = ()


_TOKEN_DIGEST = re.compile(r"^sha256:([0-9a-fA-F]{64})$")


def parse_tokens(text: str) -> TokenTable:
    """Parse the documented format (docs/oidc-callers.md): one object or a list of them, each a
    token {name, token, access, expires} or a trusted issuer {issuer, audiences, rules}."""
    try:
        document = json.loads(text)
    except ValueError as error:
        # The position only, not json's message: that can quote the document.
        raise TokenFormatError(
            f"not valid JSON (line {getattr(error, 'lineno', '?')}, "
            f"column {getattr(error, 'colno', '?')})"
        ) from None
    entries = document if isinstance(document, list) else [document]
    if not entries:
        raise TokenFormatError("the list of tokens is empty")
    tokens, issuers = [], []
    for position, entry in enumerate(entries, start=1):
        where = f"entry {position}"
        if not isinstance(entry, dict):
            raise TokenFormatError(f"{where} is not an object with name, token and access")
        if "issuer" in entry:
            issuers.append(_parse_issuer(entry, where))
        else:
            tokens.append(_parse_token(entry, where))
    names = [token.caller.name for token in tokens]
    for position, name in enumerate(names):
        if name in names[:position]:
            raise TokenFormatError(
                f"entry {name!r}: the name is used twice; names appear in the log"
            )
    if len({token.digest for token in tokens}) != len(tokens):
        raise TokenFormatError("two entries share one token; give each caller its own")
    urls = [issuer.url for issuer in issuers]
    if len(set(urls)) != len(urls):
        raise TokenFormatError("an issuer is listed twice: give it one entry with all its rules")
    return TokenTable(tuple(tokens), tuple(issuers))


def _parse_token(entry: dict, where: str) -> StaticToken:
    name, token = entry.get("name"), entry.get("token")
    if not isinstance(name, str) or not name.strip():
        raise TokenFormatError(f"{where} has no 'name'")
    where = f"{where} ({name!r})"
    digest = _TOKEN_DIGEST.match(token) if isinstance(token, str) else None
    if digest is None and (not isinstance(token, str) or len(token) < 16):
        raise TokenFormatError(
            f"{where} needs a 'token' of at least 16 characters, or 'sha256:<64 hex digits>'"
        )
    expires = entry.get("expires")
    if expires is not None:
        try:
            expires = datetime.fromisoformat(expires)
        except (TypeError, ValueError):
            expires = None
        if expires is None or expires.tzinfo is None:
            raise TokenFormatError(
                f"{where} has an 'expires' that is not an ISO 8601 time with a time zone, "
                "such as 2027-01-31T00:00:00Z"
            )
    return StaticToken(
        digest=bytes.fromhex(digest[1]) if digest else _digest(token),
        caller=Caller(name=name, read_only=_read_only(entry, where)),
        expires=expires,
    )


def _parse_issuer(entry: dict, where: str) -> oidc.TrustedIssuer:
    try:
        url = oidc.check_url(entry["issuer"])
    except ValueError as error:
        raise TokenFormatError(f"{where}: the issuer {error}") from None
    where = f"{where} ({url})"
    audiences = entry.get("audiences")
    if isinstance(audiences, str):
        audiences = [audiences]
    if not audiences or not all(isinstance(a, str) and a for a in audiences):
        raise TokenFormatError(f"{where} needs 'audiences': the audience(s) its tokens must carry")
    max_age = entry.get("max_token_age_seconds", oidc.DEFAULT_MAX_TOKEN_AGE_SECONDS)
    if not isinstance(max_age, int) or isinstance(max_age, bool) or max_age <= 0:
        raise TokenFormatError(f"{where}: 'max_token_age_seconds' must be a positive integer")
    rules = entry.get("rules")
    if not isinstance(rules, list) or not rules:
        raise TokenFormatError(f"{where} needs 'rules', a list of {{claims, access, name}}")
    return oidc.TrustedIssuer(
        url=url,
        audiences=tuple(audiences),
        rules=tuple(_parse_rule(rule, f"{where} rule {n}") for n, rule in enumerate(rules, 1)),
        max_token_age_seconds=max_age,
    )


def _parse_rule(rule, where: str) -> oidc.Rule:
    claims = rule.get("claims") if isinstance(rule, dict) else None
    if not isinstance(claims, dict) or not claims:
        # No conditions would admit every token the issuer signs: on GitHub, any repository.
        raise TokenFormatError(f"{where} needs 'claims', the conditions a token must meet")
    if not all(isinstance(value, str) for value in claims.values()):
        raise TokenFormatError(f"{where}: each claim condition is a string (`*`, `?` wildcards)")
    if all(value.strip("*") == "" for value in claims.values()):
        raise TokenFormatError(f"{where}: conditions of only '*' admit every token of the issuer")
    name = rule.get("name", "oidc:{sub}")
    try:
        oidc.name_fields(name)
    except (TypeError, ValueError, AttributeError) as error:
        raise TokenFormatError(f"{where}: 'name' {error}") from None
    return oidc.Rule(
        conditions=tuple((claim, oidc.wildcard(value)) for claim, value in claims.items()),
        read_only=_read_only(rule, where),
        name=name,
    )


def _read_only(entry: dict, where: str) -> bool:
    access = entry.get("access", READ_WRITE)
    if access not in (READ_WRITE, READ_ONLY):
        raise TokenFormatError(f"{where} has access {access!r}; use read-write or read-only")
    return access == READ_ONLY


def presented_token(authorization_header: Optional[str]) -> Optional[str]:
    """The token from `Bearer <token>` or from a Basic password (the user name is ignored)."""
    if not authorization_header:
        return None
    scheme, _, rest = authorization_header.partition(" ")
    if scheme.lower() == "bearer":
        # Parsed here, not by werkzeug, which reads a token containing '=' as parameters.
        return rest.strip() or None
    basic = Authorization.from_header(authorization_header)
    if basic is not None and basic.type == "basic":
        return basic.password or None
    return None


def find_token(table: TokenTable, token: str) -> Optional[StaticToken]:
    """Compare against every entry, digest to digest, so timing tells nothing about the match."""
    digest = _digest(token)
    found = None
    for entry in table.tokens:
        if hmac.compare_digest(entry.digest, digest):
            found = entry
    return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class InlineTokens:
    """Tokens from MLFLOW_PROXY_TOKENS, fixed for the life of the process."""

    def __init__(self, table: TokenTable):
        self._table = table

    def current(self) -> TokenTable:
        return self._table


class SecretTokens:
    """Tokens from a Secrets Manager secret, re-read every `refresh_seconds` so that a rotated
    secret takes effect without a restart. A failed re-read keeps the last good set."""

    def __init__(
        self,
        secret_arn: str,
        create_client: Callable[[], object],
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._secret_arn = secret_arn
        self._create_client = create_client
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._refresh_lock = threading.Lock()
        # The first load happens here so that a missing or malformed secret stops start-up.
        self._table = self._read()
        self._loaded_at = clock()

    def current(self) -> TokenTable:
        self._refresh_if_due()
        return self._table

    def _refresh_if_due(self) -> None:
        if self._clock() - self._loaded_at < self._refresh_seconds:
            return
        # One thread re-reads; the others carry on with the current set meanwhile.
        if not self._refresh_lock.acquire(blocking=False):
            return
        try:
            self._table = self._read()
        except Exception as error:  # noqa: BLE001 - any failure must keep the last good set
            logger.warning(
                "Could not re-read caller tokens from %s (keeping the previous set): %s",
                self._secret_arn,
                error,
            )
        finally:
            self._loaded_at = self._clock()
            self._refresh_lock.release()

    def _read(self) -> TokenTable:
        # A client per read, closed at once: no connection outlives the read, so none is
        # shared by the gunicorn workers forked after the first load.
        client = self._create_client()
        try:
            secret = client.get_secret_value(SecretId=self._secret_arn)
        finally:
            client.close()
        return parse_tokens(secret["SecretString"])


class Authenticator:
    """Finds the caller behind a request's Authorization header: a static token, else an OIDC
    token of a trusted issuer. None as tokens: an open proxy."""

    def __init__(self, tokens, verifier: Optional[oidc.Verifier] = None):
        self._tokens = tokens
        self._verifier = verifier or oidc.Verifier()

    def caller(self, authorization_header: Optional[str]) -> Caller:
        if self._tokens is None:
            return ANONYMOUS
        token = presented_token(authorization_header)
        table = self._tokens.current()
        found = find_token(table, token) if token else None
        if found is not None:
            if found.expires is not None and found.expires <= datetime.now(timezone.utc):
                raise Unauthenticated(
                    f"The token of caller {found.caller.name!r} expired at "
                    f"{found.expires.isoformat()}; ask for a new one."
                )
            return found.caller
        if token and table.issuers and oidc.looks_like_jwt(token):
            issuer, claims = self._verifier.verify(token, table.issuers)
            rule = issuer.admitting_rule(claims)
            return Caller(name=rule.caller_name(claims), read_only=rule.read_only)
        raise Unauthenticated(
            "A valid token is required: set MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_PASSWORD)."
        )


def authorize(caller: Caller, method: str, path: str) -> None:
    """Raises PermissionDenied unless the caller may make this request."""
    if not caller.may_call(method, path):
        raise PermissionDenied(
            f"Caller {caller.name!r} has a read-only token; {method} {path} changes data."
        )


def authenticator_for(config, session) -> Authenticator:
    """The Authenticator the configuration asks for; a secret that cannot be read stops start-up."""
    from mlflow_proxy.config import ConfigError  # here: config.py imports this module

    if config.open_access:
        return Authenticator(None)
    if config.tokens_secret_arn is None:
        return Authenticator(InlineTokens(config.inline_tokens))
    try:
        tokens = SecretTokens(
            config.tokens_secret_arn,
            create_client=lambda: session.create_client(
                "secretsmanager", region_name=config.tokens_secret_region
            ),
            refresh_seconds=config.tokens_refresh_seconds,
        )
    except Exception as error:
        raise ConfigError(
            f"MLFLOW_PROXY_TOKENS_SECRET_ARN: could not load caller tokens from "
            f"{config.tokens_secret_arn}: {error}"
        ) from error
    return Authenticator(tokens)
