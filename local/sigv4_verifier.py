"""Server-side check of an AWS Signature Version 4, from what arrived on the wire.

Written from AWS's documentation ("Create a canonical request for Signature Version 4",
"Elements of an AWS API request signature") with hashlib and hmac, deliberately not with
botocore's signer: the proxy signs with botocore, and a verifier that shared its code would share
its mistakes. Functions here are pure; the emulator supplies the request, the clock and the keys.
"""

import datetime
import hashlib
import hmac
import posixpath
from dataclasses import dataclass
from typing import Callable, Mapping, Optional
from urllib.parse import parse_qsl, quote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW = datetime.timedelta(minutes=5)
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


class SignatureError(Exception):
    """A request AWS would refuse; error_type is what AWS puts in x-amzn-ErrorType."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type
        self.message = message


@dataclass(frozen=True)
class Authorization:
    """The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


@dataclass(frozen=True)
class WireRequest:
    """A request as received: the raw request-target, headers keyed by lower-case name."""

    method: str
    raw_path: str
    raw_query: str
    headers: Mapping[str, str]
    body_sha256: str


def parse_authorization(header: Optional[str]) -> Authorization:
    if not header:
        raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError(
            "IncompleteSignatureException",
            f"Unsupported signing algorithm {algorithm!r}; expected {ALGORITHM}.",
        )
    fields = {}
    for part in rest.split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    missing = [
        name for name in ("Credential", "SignedHeaders", "Signature") if not fields.get(name)
    ]
    if missing:
        raise SignatureError(
            "IncompleteSignatureException",
            f"Authorization header requires {', '.join(missing)}. Authorization={header}",
        )
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise SignatureError(
            "IncompleteSignatureException",
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            f"keyid/date/region/service/aws4_request, got '{fields['Credential']}'.",
        )
    return Authorization(
        access_key_id=scope[0],
        date=scope[1],
        region=scope[2],
        service=scope[3],
        signed_headers=tuple(fields["SignedHeaders"].split(";")),
        signature=fields["Signature"],
    )


def canonical_uri(raw_path: str) -> str:
    """The path as sent, dot segments removed, URI-encoded once more (all services but S3)."""
    normalized = posixpath.normpath(raw_path or "/")
    if normalized.startswith("//"):  # normpath keeps a leading '//' (POSIX), AWS does not
        normalized = "/" + normalized.lstrip("/")
    if raw_path.endswith("/") and normalized != "/":
        normalized += "/"
    return quote(normalized, safe="/~")


def canonical_query(raw_query: str) -> str:
    """Decoded as form data ('+' is a space), re-encoded with %20, sorted by name then value."""
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    encoded = sorted((quote(name, safe="-_.~"), quote(value, safe="-_.~")) for name, value in pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_headers(headers: Mapping[str, str], signed_headers) -> str:
    lines = []
    for name in signed_headers:
        # Trimall: strip, and collapse runs of spaces into one.
        value = " ".join(headers.get(name, "").split())
        lines.append(f"{name}:{value}\n")
    return "".join(lines)


def canonical_request(request: WireRequest, signed_headers, payload_hash: str) -> str:
    return "\n".join(
        [
            request.method.upper(),
            canonical_uri(request.raw_path),
            canonical_query(request.raw_query),
            canonical_headers(request.headers, signed_headers),
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return "\n".join([ALGORITHM, amz_date, scope, digest])


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def signature(secret_access_key: str, authorization: Authorization, to_sign: str) -> str:
    key = _hmac(("AWS4" + secret_access_key).encode("utf-8"), authorization.date)
    for part in (authorization.region, authorization.service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _check_date(amz_date: Optional[str], authorization: Authorization, now: datetime.datetime):
    if not amz_date:
        raise SignatureError(
            "IncompleteSignatureException",
            "Authorization header requires existence of a 'X-Amz-Date' header.",
        )
    try:
        signed_at = datetime.datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(
            tzinfo=datetime.timezone.utc
        )
    except ValueError:
        raise SignatureError(
            "IncompleteSignatureException",
            f"X-Amz-Date must be in the form YYYYMMDD'T'HHMMSS'Z', got '{amz_date}'.",
        ) from None
    if authorization.date != amz_date[:8]:
        raise SignatureError(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{authorization.date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    stamp = now.strftime(AMZ_DATE_FORMAT)
    if signed_at < now - MAX_CLOCK_SKEW:
        earliest = (now - MAX_CLOCK_SKEW).strftime(AMZ_DATE_FORMAT)
        raise SignatureError(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {earliest} ({stamp} - 5 min.)",
        )
    if signed_at > now + MAX_CLOCK_SKEW:
        latest = (now + MAX_CLOCK_SKEW).strftime(AMZ_DATE_FORMAT)
        raise SignatureError(
            "InvalidSignatureException",
            f"Signature not yet current: {amz_date} is still later than {latest} "
            f"({stamp} + 5 min.)",
        )


def verify(
    request: WireRequest,
    *,
    service: str,
    regions,
    find_secret: Callable[[str, Optional[str]], Optional[str]],
    now: datetime.datetime,
) -> Authorization:
    """Return the request's authorization if its signature holds; raise SignatureError if not.

    find_secret(access_key_id, session_token) returns the key's secret, or None when the key is
    unknown or the session token does not belong to it.
    """
    authorization = parse_authorization(request.headers.get("authorization"))
    if authorization.service != service:
        raise SignatureError(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'. ",
        )
    if authorization.region not in regions:
        raise SignatureError(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{authorization.region}'. ",
        )
    _check_date(request.headers.get("x-amz-date"), authorization, now)

    required = ["host", "x-amz-date"]
    session_token = request.headers.get("x-amz-security-token")
    if session_token is not None:
        required.append("x-amz-security-token")
    unsigned = [name for name in required if name not in authorization.signed_headers]
    if unsigned:
        raise SignatureError(
            "IncompleteSignatureException",
            f"Signed headers must include {', '.join(unsigned)}; "
            f"SignedHeaders={';'.join(authorization.signed_headers)}",
        )

    secret = find_secret(authorization.access_key_id, session_token)
    if secret is None:
        raise SignatureError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )

    claimed_hash = request.headers.get("x-amz-content-sha256")
    if claimed_hash is not None and claimed_hash != request.body_sha256:
        raise SignatureError(
            "InvalidSignatureException",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )

    canonical = canonical_request(request, authorization.signed_headers, request.body_sha256)
    to_sign = string_to_sign(request.headers["x-amz-date"], authorization.scope, canonical)
    expected = signature(secret, authorization, to_sign)
    if not hmac.compare_digest(expected, authorization.signature):
        raise SignatureError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details.\n\nThe Canonical String for this request should have "
            f"been\n'{canonical}'\n\nThe String-to-Sign should have been\n'{to_sign}'\n",
        )
    return authorization
