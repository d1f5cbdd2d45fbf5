"""The proxy's configuration: read once from the environment, validated at start-up.

The variables, their defaults and meanings: docs/configuration.md (a test keeps it in step).
"""

import math
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional
from urllib.parse import urlsplit

from mlflow_proxy.artifact_location import ArtifactLocation, StoreUriError, parse_store_uri
from mlflow_proxy.callers import TokenFormatError, TokenTable, parse_tokens

TRACKING_SERVER = "tracking"
SERVERLESS = "serverless"

_RESOURCE_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):sagemaker:(?P<region>[a-z]{2}(-[a-z]+)+-\d+):\d{12}:"
    r"(?P<kind>mlflow-tracking-server|mlflow-app)/[a-zA-Z0-9](-*[a-zA-Z0-9])*$"
)
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z]{2}(-[a-z]+)+-\d+):\d{12}:secret:.+$"
)
DEFAULT_MAX_ARTIFACT_BYTES = 5 * 1024**3
# A redirected download's presigned URL lives this long at most. botocore refreshes temporary
# credentials (assumed role, instance profile) before fewer than 10 minutes are left (its
# mandatory refresh), so a URL of 5 minutes never outlives the credentials that signed it
# (docs/artifacts-and-ui.md, "Downloads straight from S3").
MAX_ARTIFACT_REDIRECT_SECONDS = 300
DEFAULT_ARTIFACT_REDIRECT_SECONDS = 60

# Connections per gunicorn worker, each served by a greenlet: the calls a worker has in flight at
# most. Each worker's connection pools to SageMaker and S3 hold as many, so no call opens one of
# its own. Chosen by measurement, memory bound included: docs/configuration.md, "Connections".
DEFAULT_CONNECTIONS = 512
# Each call in flight may hold about 1.2 MiB (docs/configuration.md): 1024 a worker is already
# more than a 2 GiB instance holds at once.
MAX_CONNECTIONS = 1024

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


class ConfigError(ValueError):
    """A variable is missing or malformed; the message names it and says what to set."""


@dataclass(frozen=True)
class CallerDeadlines:
    """How long a caller may take to send its request (docs/security.md, "Deadlines")."""

    header_seconds: float = 10.0
    body_read_seconds: float = 30.0


def load_caller_deadlines(environ: Mapping[str, str]) -> CallerDeadlines:
    """Also read by the gunicorn worker, which enforces them (gunicorn_worker.py)."""
    defaults = CallerDeadlines()
    return CallerDeadlines(
        header_seconds=_positive(
            environ, "MLFLOW_PROXY_HEADER_TIMEOUT_SECONDS", defaults.header_seconds, float
        ),
        body_read_seconds=_positive(
            environ, "MLFLOW_PROXY_BODY_READ_TIMEOUT_SECONDS", defaults.body_read_seconds, float
        ),
    )


def load_connections(environ: Mapping[str, str]) -> int:
    """Also read by gunicorn.conf.py: gunicorn's worker_connections and the pools' size are this
    one number."""
    connections = _positive(environ, "MLFLOW_PROXY_CONNECTIONS", DEFAULT_CONNECTIONS, int)
    if connections > MAX_CONNECTIONS:
        raise ConfigError(
            f"MLFLOW_PROXY_CONNECTIONS={connections} is above {MAX_CONNECTIONS}: the calls in "
            f"flight could take more memory than an instance has; unset it for "
            f"{DEFAULT_CONNECTIONS}, or add instances."
        )
    return connections


def load_health_port(environ: Mapping[str, str]) -> Optional[int]:
    """Also read by gunicorn.conf.py: the port the master answers the load balancer's health check
    on (master_health.py); None leaves /health to the workers, on the proxy's own port."""
    text = environ.get("MLFLOW_PROXY_HEALTH_PORT", "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigError(
            f"MLFLOW_PROXY_HEALTH_PORT={text!r} must be a TCP port (1-65535), other than the "
            "proxy's own; unset it to answer /health on the proxy's port only."
        )
    return int(text)


@dataclass(frozen=True)
class Config:
    resource_arn: str
    mode: str  # TRACKING_SERVER or SERVERLESS, from the ARN
    region: str
    endpoint_url: str  # no trailing slash
    role_arn: Optional[str]
    read_only_role_arn: Optional[str]
    open_access: bool  # MLFLOW_PROXY_AUTH=none
    inline_tokens: Optional[TokenTable] = field(repr=False)
    tokens_secret_arn: Optional[str]
    tokens_refresh_seconds: int
    max_body_bytes: int
    connect_timeout_seconds: float
    read_timeout_seconds: float
    artifact_location: Optional[ArtifactLocation] = None  # None: artifact calls are forwarded
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES
    caller_deadlines: CallerDeadlines = CallerDeadlines()
    # None: downloads stream through the proxy; else the lifetime of the presigned S3 URL an
    # artifact GET is redirected to (MLFLOW_PROXY_ARTIFACT_DOWNLOAD_REDIRECT).
    artifact_redirect_seconds: Optional[int] = None
    connections: int = DEFAULT_CONNECTIONS  # per worker, and per upstream pool
    health_port: Optional[int] = None  # gunicorn's master answers on it (master_health.py)

    @property
    def tokens_secret_region(self) -> str:
        return _SECRET_ARN.match(self.tokens_secret_arn)["region"]


def default_endpoint_url(mode: str, region: str) -> str:
    if mode == SERVERLESS:
        return f"https://mlflow.sagemaker.{region}.app.aws"
    return f"https://{region}.experiments.sagemaker.aws"


def load_config(environ: Mapping[str, str]) -> Config:
    """Read and check every variable, so a bad one stops start-up instead of a request."""

    def get(name: str) -> Optional[str]:
        value = environ.get(name, "").strip()
        return value or None

    resource_arn = get("SM_MLFLOW_RESOURCE_ARN")
    if resource_arn is None:
        raise ConfigError(
            "SM_MLFLOW_RESOURCE_ARN is not set: set it to the ARN of the SageMaker MLflow "
            "tracking server or MLflow App to reach."
        )
    arn = _RESOURCE_ARN.match(resource_arn)
    if arn is None:
        raise ConfigError(
            f"SM_MLFLOW_RESOURCE_ARN={resource_arn!r} is not a SageMaker MLflow ARN: expected "
            "arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name> or "
            "arn:aws:sagemaker:<region>:<account>:mlflow-app/<app-id>."
        )
    mode = SERVERLESS if arn["kind"] == "mlflow-app" else TRACKING_SERVER

    region = get("SM_MLFLOW_AWS_REGION") or arn["region"]
    if not _REGION.match(region):
        raise ConfigError(
            f"SM_MLFLOW_AWS_REGION={region!r} is not an AWS region name such as us-east-1: "
            "fix it or unset it to use the ARN's region."
        )

    role_arn = _role_arn(
        get, "SM_MLFLOW_ROLE_ARN", "unset it to sign with the default credential chain"
    )
    read_only_role_arn = _role_arn(
        get,
        "SM_MLFLOW_READ_ONLY_ROLE_ARN",
        "unset it to sign read-only callers' requests like the others",
    )

    endpoint_url = _endpoint_url(get("SM_MLFLOW_ENDPOINT_URL"), mode, region)

    auth = (get("MLFLOW_PROXY_AUTH") or "token").lower()
    if auth not in ("token", "none"):
        raise ConfigError(
            f"MLFLOW_PROXY_AUTH={auth!r} is not understood: unset it (callers need a token) "
            "or set it to 'none' for an open proxy."
        )
    inline_text = get("MLFLOW_PROXY_TOKENS")
    secret_arn = get("MLFLOW_PROXY_TOKENS_SECRET_ARN")
    if inline_text and secret_arn:
        raise ConfigError(
            "MLFLOW_PROXY_TOKENS and MLFLOW_PROXY_TOKENS_SECRET_ARN are both set: keep one."
        )
    if auth == "none" and (inline_text or secret_arn):
        raise ConfigError(
            "MLFLOW_PROXY_AUTH=none asks for an open proxy but caller tokens are configured: "
            "unset MLFLOW_PROXY_AUTH to require the tokens, or unset the tokens."
        )
    if auth == "token" and not (inline_text or secret_arn):
        raise ConfigError(
            "No caller tokens: set MLFLOW_PROXY_TOKENS_SECRET_ARN (or MLFLOW_PROXY_TOKENS for "
            "local use), or set MLFLOW_PROXY_AUTH=none to run an open proxy on purpose."
        )
    inline_tokens = None
    if inline_text:
        try:
            inline_tokens = parse_tokens(inline_text)
        except TokenFormatError as error:
            raise ConfigError(f"MLFLOW_PROXY_TOKENS: {error}") from None
    if secret_arn is not None and not _SECRET_ARN.match(secret_arn):
        raise ConfigError(
            f"MLFLOW_PROXY_TOKENS_SECRET_ARN={secret_arn!r} is not a Secrets Manager secret ARN "
            "(arn:aws:secretsmanager:<region>:<account>:secret:<name>)."
        )

    store_uri = get("MLFLOW_PROXY_ARTIFACT_STORE_URI")
    try:
        artifact_location = parse_store_uri(store_uri) if store_uri else None
    except StoreUriError as error:
        raise ConfigError(str(error)) from None

    return Config(
        resource_arn=resource_arn,
        mode=mode,
        region=region,
        endpoint_url=endpoint_url,
        role_arn=role_arn,
        read_only_role_arn=read_only_role_arn,
        open_access=auth == "none",
        inline_tokens=inline_tokens,
        tokens_secret_arn=secret_arn,
        tokens_refresh_seconds=_positive(environ, "MLFLOW_PROXY_TOKENS_REFRESH_SECONDS", 300, int),
        max_body_bytes=_positive(environ, "MLFLOW_PROXY_MAX_BODY_BYTES", 100 * 1024 * 1024, int),
        connect_timeout_seconds=_positive(
            environ, "MLFLOW_PROXY_CONNECT_TIMEOUT_SECONDS", 10.0, float
        ),
        read_timeout_seconds=_positive(environ, "MLFLOW_PROXY_READ_TIMEOUT_SECONDS", 300.0, float),
        artifact_location=artifact_location,
        max_artifact_bytes=_positive(
            environ, "MLFLOW_PROXY_MAX_ARTIFACT_BYTES", DEFAULT_MAX_ARTIFACT_BYTES, int
        ),
        caller_deadlines=load_caller_deadlines(environ),
        artifact_redirect_seconds=_artifact_redirect_seconds(environ, artifact_location),
        connections=load_connections(environ),
        health_port=load_health_port(environ),
    )


def _artifact_redirect_seconds(
    environ: Mapping[str, str], artifact_location: Optional[ArtifactLocation]
) -> Optional[int]:
    name = "MLFLOW_PROXY_ARTIFACT_DOWNLOAD_REDIRECT"
    text = environ.get(name, "").strip().lower() or "false"
    if text not in ("true", "false"):
        raise ConfigError(
            f"{name}={text!r} must be 'true' (answer artifact downloads with a redirect to S3) "
            "or 'false' (stream them through the proxy); unset it for false."
        )
    seconds_name = "MLFLOW_PROXY_ARTIFACT_REDIRECT_SECONDS"
    seconds = _positive(environ, seconds_name, DEFAULT_ARTIFACT_REDIRECT_SECONDS, int)
    if seconds > MAX_ARTIFACT_REDIRECT_SECONDS:
        raise ConfigError(
            f"{seconds_name}={seconds} is more than {MAX_ARTIFACT_REDIRECT_SECONDS}: a presigned "
            "URL that lives longer could outlive the temporary credentials that signed it; "
            f"unset it for {DEFAULT_ARTIFACT_REDIRECT_SECONDS}."
        )
    if text == "false":
        return None
    if artifact_location is None:
        raise ConfigError(
            f"{name}=true redirects artifact downloads to the artifact store, but "
            "MLFLOW_PROXY_ARTIFACT_STORE_URI is not set: set it, or unset "
            f"{name}."
        )
    return seconds


def _role_arn(get, name: str, otherwise: str) -> Optional[str]:
    value = get(name)
    if value is not None and not _ROLE_ARN.match(value):
        raise ConfigError(
            f"{name}={value!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>): "
            f"fix it or {otherwise}."
        )
    return value


def _endpoint_url(value: Optional[str], mode: str, region: str) -> str:
    if value is None:
        return default_endpoint_url(mode, region)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"SM_MLFLOW_ENDPOINT_URL={value!r} is not a base URL such as "
            "https://us-east-1.experiments.sagemaker.aws: fix it or unset it to use the "
            "public endpoint."
        )
    return value.rstrip("/")


def _positive(environ: Mapping[str, str], name: str, default, kind):
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={text!r} must be a positive number; unset it for {default}.")
    return value
