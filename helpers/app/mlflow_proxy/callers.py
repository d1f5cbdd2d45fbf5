"""Who is calling: caller tokens (inline or from Secrets Manager), how a request is
authenticated with them, and what each caller may do."""

import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from werkzeug.datastructures import Authorization

from mlflow_proxy.errors import PermissionDenied, Unauthenticated
from mlflow_proxy.read_endpoints import READ_ONLY_POST_PATHS

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
        if path.startswith("/ajax-api/"):
            path = "/api/" + path[len("/ajax-api/") :]
        return method == "POST" and path in READ_ONLY_POST_PATHS


ANONYMOUS = Caller(name="anonymous", read_only=False)

# (SHA-256 of the token, caller): tokens are kept only as digests.
TokenTable = tuple[tuple[bytes, Caller], ...]


def parse_tokens(text: str) -> TokenTable:
    """Parse the documented format: one object or a list of {name, token, access}."""
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
    table = []
    seen_names = set()
    for position, entry in enumerate(entries, start=1):
        where = f"entry {position}"
        if not isinstance(entry, dict):
            raise TokenFormatError(f"{where} is not an object with name, token and access")
        name, token = entry.get("name"), entry.get("token")
        access = entry.get("access", READ_WRITE)
        if not isinstance(name, str) or not name.strip():
            raise TokenFormatError(f"{where} has no 'name'")
        where = f"entry {position} ({name!r})"
        if not isinstance(token, str) or len(token) < 16:
            raise TokenFormatError(f"{where} needs a 'token' of at least 16 characters")
        if access not in (READ_WRITE, READ_ONLY):
            raise TokenFormatError(f"{where} has access {access!r}; use read-write or read-only")
        if name in seen_names:
            raise TokenFormatError(f"{where}: the name is used twice; names appear in the log")
        seen_names.add(name)
        table.append((_digest(token), Caller(name=name, read_only=access == READ_ONLY)))
    digests = [digest for digest, _ in table]
    if len(set(digests)) != len(digests):
        raise TokenFormatError("two entries share one token; give each caller its own")
    return tuple(table)


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


def find_caller(table: TokenTable, token: str) -> Optional[Caller]:
    """Compare against every entry, digest to digest, so timing tells nothing about the match."""
    digest = _digest(token)
    found = None
    for known_digest, caller in table:
        if hmac.compare_digest(known_digest, digest):
            found = caller
    return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class InlineTokens:
    """Tokens from MLFLOW_PROXY_TOKENS, fixed for the life of the process."""

    def __init__(self, table: TokenTable):
        self._table = table

    def caller_for(self, token: str) -> Optional[Caller]:
        return find_caller(self._table, token)


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

    def caller_for(self, token: str) -> Optional[Caller]:
        self._refresh_if_due()
        return find_caller(self._table, token)

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
    """Finds the caller behind a request's Authorization header; None as tokens: an open proxy."""

    def __init__(self, tokens):
        self._tokens = tokens

    def caller(self, authorization_header: Optional[str]) -> Caller:
        if self._tokens is None:
            return ANONYMOUS
        token = presented_token(authorization_header)
        caller = self._tokens.caller_for(token) if token else None
        if caller is None:
            raise Unauthenticated(
                "A valid token is required: set MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_PASSWORD)."
            )
        return caller


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
