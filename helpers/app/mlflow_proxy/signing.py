"""SigV4 signing of the upstream request, the way SageMaker's MLflow endpoints verify it.

The rules (docs/aws-facts.md#signing-rules): the routing header is set before
signing so it is signed; the body's SHA-256 travels in X-Amz-Content-SHA256; Connection is never
signed; query strings use %20 for a space.
"""

import re
from urllib.parse import parse_qsl, quote, urlencode

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from mlflow_proxy.config import SERVERLESS, TRACKING_SERVER

SERVICE_NAMES = {TRACKING_SERVER: "sagemaker-mlflow", SERVERLESS: "sagemaker"}
ROUTING_HEADERS = {
    TRACKING_SERVER: "x-mlflow-sm-tracking-server-arn",
    SERVERLESS: "x-sm-mlflow-app-arn",
}


# name=value pairs of unreserved characters only, names not empty (most of MLflow's GETs).
_UNRESERVED = r"[A-Za-z0-9\-._~]"
_PLAIN_QUERY = re.compile(rf"{_UNRESERVED}+={_UNRESERVED}*(?:&{_UNRESERVED}+={_UNRESERVED}*)*")


def canonical_query(raw_query: str) -> str:
    """Re-encode a query string the way AWS canonicalises it.

    MLflow's client sends a space as '+'; botocore signs the query string as it finds it, while
    the service decodes '+' to a space and signs %20, so the raw '+' fails with 403. Decoding and
    re-encoding every name and value (only unreserved characters left bare) makes the URL sent
    and the string signed the same thing: space -> %20, a literal plus (%2B) stays %2B.
    Raises UnicodeDecodeError for a query that is not UTF-8.
    """
    if _PLAIN_QUERY.fullmatch(raw_query):
        return raw_query  # nothing to decode or encode: re-encoding gives it back as it is
    pairs = parse_qsl(raw_query, keep_blank_values=True, errors="strict")
    return urlencode(pairs, quote_via=quote, safe="")


def host_header(endpoint_url: str) -> str:
    """The Host header of requests to the endpoint, as botocore derives it from a URL to sign:
    the host in lower case, with the port unless it is the scheme's default.

    Sent and signed as given, so that botocore does not derive it again from every URL it signs
    (twice per signature) and what arrives is what was signed by construction.
    """
    url = urllib3.util.parse_url(endpoint_url)
    host = url.host.lower()
    if url.port is None or url.port == {"http": 80, "https": 443}.get(url.scheme):
        return host
    return f"{host}:{url.port}"


# Signing keys by (secret key, day, region, service). Few are live at once: the signing role's
# and the read-only role's, today's and, around midnight, the next day's, a rotation's old and
# new secret; the dict is emptied when it reaches _MAX_SIGNING_KEYS.
_signing_keys: dict[tuple[str, str, str, str], bytes] = {}
_MAX_SIGNING_KEYS = 8


class _SigV4Auth(SigV4Auth):
    """botocore's SigV4, with two steps done once instead of again and again:

    - the headers to sign are selected once per signature instead of twice (for the canonical
      request, then again for the Authorization header): a quarter of its cost. Nothing changes
      the headers in between; a signer is made for each signature.
    - the signing key is derived once per secret, day, region and service: botocore's
      signature() chains five HMACs, each a new OpenSSL context, and the first four give the
      same key all day (3.7% of a small call's instructions). Derived with botocore's own HMAC,
      in botocore's steps; the signature is the last HMAC, as botocore makes it.
    """

    _selected = None

    def headers_to_sign(self, request):
        if self._selected is None:
            self._selected = super().headers_to_sign(request)
        return self._selected

    def signature(self, string_to_sign, request):
        scope = (
            self.credentials.secret_key,
            request.context["timestamp"][0:8],
            self._region_name,
            self._service_name,
        )
        key = _signing_keys.get(scope)
        if key is None:
            key = f"AWS4{scope[0]}".encode()
            for part in (*scope[1:], "aws4_request"):
                key = self._sign(key, part)
            if len(_signing_keys) >= _MAX_SIGNING_KEYS:
                _signing_keys.clear()
            _signing_keys[scope] = key
        return self._sign(key, string_to_sign, hex=True)


def sign(
    method: str,
    url: str,
    headers: dict,
    body_sha256: str,
    credentials: ReadOnlyCredentials,
    service: str,
    region: str,
) -> dict:
    """Return the headers to send: `headers` plus the body hash, date, token and signature.

    `headers` must already hold the routing header and Host (host_header), and must not hold
    Connection.
    """
    request = AWSRequest(
        method=method,
        url=url,
        headers={**headers, "X-Amz-Content-SHA256": body_sha256},
    )
    _SigV4Auth(credentials, service, region).add_auth(request)
    return dict(request.headers.items())
