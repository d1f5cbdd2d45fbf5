"""The SageMaker managed-MLflow endpoint, emulated: verify SigV4 from the wire, then forward.

One WSGI app per mode, served by gunicorn (local/stand_in.py starts it):

    gunicorn 'local.sagemaker_emulator:create_app(mode="tracking", upstream_url="http://...")'

It answers three kinds of request:
- the MLflow REST API, as SageMaker does: the SigV4 signature is recomputed from what arrived
  (method, raw path and query, headers, the SHA-256 of the body actually received), then the
  service name and region of the mode, the clock skew (5 minutes), the key (and, for temporary
  keys, X-Amz-Security-Token), and the routing header (present, signed, equal to this mode's ARN)
  are checked; hop-by-hop headers such as Connection are dropped before verifying, as AWS
  does. Refusals are 403 JSON `{"message": ...}` with `x-amzn-ErrorType`, the shape AWS's
  JSON services use. What passes goes to a real `mlflow server`, the response streamed back.
- STS: `POST /` with `Action=AssumeRole` (SigV4 service `sts`), answered with the XML botocore
  parses; botocore reaches it through AWS_ENDPOINT_URL_STS (local/emulated_sts.py).
- SageMaker's control plane, for the presigned MLflow UI URL the proxy's /ui asks for: `POST /`
  with `X-Amz-Target: SageMaker.CreatePresigned...` (SigV4 service `sagemaker`, JSON 1.1);
  botocore reaches it through AWS_ENDPOINT_URL_SAGEMAKER (local/emulated_control_plane.py).
- `GET /__stand-in/health` and `GET /__stand-in/stats` (`{"assume_role_calls": n,
  "assume_role_calls_by_role": {role ARN: n}}`), which AWS does not have, for tests.

Where it is stricter than AWS:
- The routing header and X-Amz-Security-Token must be signed (AWS accepts an unsigned token
  on some services); X-Amz-Content-SHA256, when sent, must match the body (AWS services other
  than S3 only fold the hash into the signature; either way a tampered body is refused).
- Only one account, two roles (fixed_credentials.py), one ARN per mode; any other ARN is
  AccessDenied.
- IAM (emulated_sts.POLICIES: the long-term key may do everything, the stand-in role all of
  MLflow, the read-only role the read actions; a call outside its list is 403
  AccessDeniedException, worded as AWS words it): on a tracking server the action comes from
  helpers/app/mlflow_proxy/iam_actions.py, and a call the Service Authorization Reference names no action
  for (`sagemaker-mlflow:UndocumentedAction` here) is refused to every identity without
  `sagemaker-mlflow:*`; what AWS checks for those is not documented. An MLflow App checks only
  `sagemaker:CallMlflowAppApi`, the one action the reference gives apps, so there the read-only
  role may write (whether AWS also checks the per-API actions on apps is not documented).
Where it is looser than AWS:
- IAM is a list of allowed actions per identity: no Deny, no conditions, no resource ARNs in the
  policies (the routing-header check stands in for the one ARN), no permission boundaries or
  SCPs. The control plane (presigned UI URL) checks no policy at all.
- STS also accepts scope region us-east-1 (the global endpoint's) besides the configured region.
- No throttling, no request-size limits, no TLS; HTTP on loopback only.
- Temporary credentials are checked by their sealed session token alone (no revocation).
- SignedHeaders is taken as the client lists it: not required to be lower-case and sorted, and
  the canonical headers follow the client's order; a header listed but absent is signed as
  empty instead of refused; the Host header is not required to name the service's host.
- Paths are canonicalised as they arrive: a `//` that botocore collapses when it signs is not
  modelled (the proxy never forwards one: its routes answer 404 first).
Not confirmed against AWS: the status and error type SageMaker answers with for a missing
routing header or an unreachable MLflow backend (here 403 AccessDeniedException and
503 ServiceUnavailableException). Message texts follow AWS's where they are documented.
The assume-role counter lives in the process and restarts at zero with it.
"""

import datetime
import hashlib
import json
import tempfile
import threading
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

import urllib3
from werkzeug.wrappers import Request, Response

from local import emulated_control_plane, emulated_sts, fixed_credentials
from mlflow_proxy import iam_actions as mlflow_iam_actions
from local.sigv4_verifier import SignatureError, WireRequest, verify

CHUNK_SIZE = 64 * 1024
# Bodies above this spill from memory to a temporary file while they are hashed.
SPOOL_MAX_BYTES = 1024 * 1024
HOP_BY_HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
# What SageMaker consumes itself and does not hand to MLflow.
SIGV4_HEADERS = {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}


@dataclass(frozen=True)
class Mode:
    service: str
    routing_header: str
    resource_arn: str

    def action_for(self, method: str, path: str) -> str:
        """The IAM action this call is authorised as (helpers/app/mlflow_proxy/iam_actions.py)."""
        if self.service == "sagemaker":
            return mlflow_iam_actions.MLFLOW_APP_ACTION
        action = mlflow_iam_actions.action_for(method, path)
        # A call with no documented action gets an action no policy lists by name: only
        # `sagemaker-mlflow:*` allows it.
        return f"{self.service}:{action or 'UndocumentedAction'}"


MODES = {
    "tracking": Mode(
        "sagemaker-mlflow", "x-mlflow-sm-tracking-server-arn", fixed_credentials.TRACKING_SERVER_ARN
    ),
    "serverless": Mode("sagemaker", "x-sm-mlflow-app-arn", fixed_credentials.MLFLOW_APP_ARN),
}


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def aws_error(status: int, error_type: str, message: str) -> Response:
    response = Response(json.dumps({"message": message}), status, mimetype="application/json")
    response.headers["x-amzn-ErrorType"] = error_type
    response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
    return response


def json_1_1_error(status: int, error_type: str, message: str) -> Response:
    """An error as AWS's JSON 1.1 services (the control plane) send it: the type in `__type`."""
    response = aws_error(status, error_type, message)
    response.set_data(json.dumps({"__type": error_type, "message": message}))
    response.mimetype = "application/x-amz-json-1.1"
    return response


def wire_headers(environ) -> dict:
    """Headers as the client sent them, lower-case, without the hop-by-hop ones AWS strips."""
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").lower()
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            name = key.replace("_", "-").lower()
        else:
            continue
        if name not in HOP_BY_HOP_HEADERS:
            headers[name] = value
    return headers


def raw_target(environ) -> tuple:
    """(path, query) exactly as sent: PATH_INFO is already decoded, so prefer the raw URI."""
    raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw_uri is None:
        path = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/~!$&'()*+,;=:@")
        raw_uri = path + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
    path, _, query = raw_uri.partition("?")
    return path, query


def spool_body(stream):
    """The body in a temporary file (memory first) and its SHA-256, read in chunks."""
    body = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES)
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
        digest.update(chunk)
        body.write(chunk)
        size += len(chunk)
    body.seek(0)
    return body, size, digest.hexdigest()


class SageMakerEmulator:
    def __init__(self, mode: str, upstream_url: str, clock=utc_now):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
        self.mode = MODES[mode]
        self.upstream_url = upstream_url.rstrip("/")
        self.clock = clock
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=120))
        self.assume_role_calls = 0
        self.assume_role_calls_by_role: dict = {}
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        request = Request(environ)
        body, size, body_sha256 = spool_body(request.stream)
        try:
            response = self.dispatch(request, body, size, body_sha256)
        except Exception:
            body.close()
            raise
        response.call_on_close(body.close)
        return response(environ, start_response)

    def dispatch(self, request, body, size, body_sha256) -> Response:
        if request.path == "/__stand-in/health":
            return Response(json.dumps({"status": "ok"}), mimetype="application/json")
        if request.path == "/__stand-in/stats":
            return Response(
                json.dumps(
                    {
                        "assume_role_calls": self.assume_role_calls,
                        "assume_role_calls_by_role": self.assume_role_calls_by_role,
                    }
                ),
                mimetype="application/json",
            )
        path, query = raw_target(request.environ)
        wire = WireRequest(request.method, path, query, wire_headers(request.environ), body_sha256)
        if (
            request.method == "POST"
            and path == "/"
            and request.mimetype == "application/x-www-form-urlencoded"
        ):
            return self.sts(wire, body.read())
        if request.method == "POST" and emulated_control_plane.is_control_plane(wire.headers):
            return self.control_plane(wire, body.read())
        return self.sagemaker(wire, request, body, size)

    def control_plane(self, wire: WireRequest, body: bytes) -> Response:
        now = self.clock()
        try:
            verify(
                wire,
                service="sagemaker",
                regions={fixed_credentials.REGION},
                find_secret=lambda key, token: emulated_sts.find_secret(key, token, now),
                now=now,
            )
            answer = emulated_control_plane.presigned_ui_url(
                wire.headers["x-amz-target"], body, self.mode.resource_arn, self.upstream_url
            )
        except SignatureError as error:
            return json_1_1_error(403, error.error_type, error.message)
        except emulated_control_plane.ControlPlaneError as error:
            return json_1_1_error(error.status, error.error_type, error.message)
        return Response(json.dumps(answer), mimetype="application/x-amz-json-1.1")

    def sts(self, wire: WireRequest, body: bytes) -> Response:
        now = self.clock()
        try:
            verify(
                wire,
                service="sts",
                regions={fixed_credentials.REGION, "us-east-1"},
                find_secret=lambda key, token: emulated_sts.find_secret(key, token, now),
                now=now,
            )
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            document = emulated_sts.assume_role(form, now)
        except SignatureError as error:
            code = emulated_sts.STS_ERROR_CODES.get(error.error_type, error.error_type)
            return Response(
                emulated_sts.error_response_xml(code, error.message), 403, mimetype="text/xml"
            )
        except emulated_sts.StsError as error:
            document = emulated_sts.error_response_xml(error.code, error.message)
            return Response(document, error.status, mimetype="text/xml")
        with self._lock:
            self.assume_role_calls += 1
            role_arn = form["RoleArn"]
            self.assume_role_calls_by_role[role_arn] = (
                self.assume_role_calls_by_role.get(role_arn, 0) + 1
            )
        return Response(document, mimetype="text/xml")

    def sagemaker(self, wire: WireRequest, request: Request, body, size: int) -> Response:
        now = self.clock()
        try:
            authorization = verify(
                wire,
                service=self.mode.service,
                regions={fixed_credentials.REGION},
                find_secret=lambda key, token: emulated_sts.find_secret(key, token, now),
                now=now,
            )
        except SignatureError as error:
            return aws_error(403, error.error_type, error.message)

        routing_value = wire.headers.get(self.mode.routing_header)
        if routing_value is None:
            return aws_error(
                403, "AccessDeniedException", f"Missing required header {self.mode.routing_header}."
            )
        if self.mode.routing_header not in authorization.signed_headers:
            return aws_error(
                403,
                "AccessDeniedException",
                f"Header {self.mode.routing_header} must be signed; "
                f"SignedHeaders={';'.join(authorization.signed_headers)}",
            )
        if routing_value != self.mode.resource_arn:
            return aws_error(
                403,
                "AccessDeniedException",
                f"User: {authorization.access_key_id} is not authorized to perform: "
                f"{self.mode.service}:* on resource: {routing_value}",
            )
        identity, caller_arn = emulated_sts.caller_of(
            authorization.access_key_id, wire.headers.get("x-amz-security-token")
        )
        action = self.mode.action_for(request.method, wire.raw_path)
        if not emulated_sts.is_allowed(identity, action):
            return aws_error(
                403,
                "AccessDeniedException",
                f"User: {caller_arn} is not authorized to perform: {action} on resource: "
                f"{routing_value} because no identity-based policy allows the {action} action",
            )
        return self.forward(wire, request, body, size)

    def forward(self, wire: WireRequest, request: Request, body, size: int) -> Response:
        headers = {
            name: value
            for name, value in wire.headers.items()
            if name not in SIGV4_HEADERS
            and name not in ("host", "content-length", self.mode.routing_header)
        }
        headers["content-length"] = str(size)
        url = self.upstream_url + wire.raw_path + ("?" + wire.raw_query if wire.raw_query else "")
        try:
            upstream = self.http.urlopen(
                request.method,
                url,
                body=body if size else None,
                headers=headers,
                preload_content=False,
                decode_content=False,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as error:
            return aws_error(
                503, "ServiceUnavailableException", f"The MLflow server is unreachable: {error}"
            )

        def stream():
            try:
                yield from upstream.stream(CHUNK_SIZE, decode_content=False)
            finally:
                upstream.release_conn()

        response_headers = [
            (name, value)
            for name, value in upstream.headers.items()
            if name.lower() not in HOP_BY_HOP_HEADERS
        ]
        return Response(
            stream(), upstream.status, headers=response_headers, direct_passthrough=True
        )


def create_app(mode: str, upstream_url: str) -> SageMakerEmulator:
    return SageMakerEmulator(mode, upstream_url)
