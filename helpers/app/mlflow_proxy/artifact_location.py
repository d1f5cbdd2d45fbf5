"""Where the artifact store is (MLFLOW_PROXY_ARTIFACT_STORE_URI), and which keys callers may name.

Callers name artifacts by paths relative to the store's root, the way MLflow's own artifact
service does. A path is checked before it becomes an S3 key, so that nothing outside the root is
reachable: no '..', no absolute path, no backslash, no empty segment, and the same again after
percent-decoding (a path that decodes differently twice is an attempt to slip past a check).
"""

import re
from dataclasses import dataclass
from urllib.parse import unquote

from mlflow_proxy.errors import InvalidRequest

# S3's bucket naming rules (no dots-only tricks, no uppercase); the prefix is any key prefix.
_STORE_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?P<prefix>/.*)?$")
_DRIVE = re.compile(r"^[A-Za-z]:")
_PERCENT_DECODING_ROUNDS = 3


class StoreUriError(ValueError):
    """MLFLOW_PROXY_ARTIFACT_STORE_URI is not an s3:// URI; the message says what to set."""


@dataclass(frozen=True)
class ArtifactLocation:
    bucket: str
    prefix: str  # without leading or trailing '/'; '' for the bucket's root

    @property
    def s3_root(self) -> str:
        """`s3://bucket/prefix/`: every URI under the store starts with exactly this."""
        return f"s3://{self.bucket}/{self.prefix}/" if self.prefix else f"s3://{self.bucket}/"

    def key(self, artifact_path: str) -> str:
        """The S3 key of a path already checked by `safe_path` ('' is the root)."""
        return "/".join(part for part in (self.prefix, artifact_path) if part)

    def relative_path(self, key: str) -> str:
        """The inverse of `key`, for keys S3 listed under the root."""
        root = f"{self.prefix}/" if self.prefix else ""
        if not key.startswith(root):
            raise ValueError(f"{key!r} is not under {root!r}")
        return key[len(root) :]


def parse_store_uri(text: str) -> ArtifactLocation:
    match = _STORE_URI.match(text.strip())
    if match is None:
        raise StoreUriError(
            f"MLFLOW_PROXY_ARTIFACT_STORE_URI={text!r} is not an S3 URI: set it to the MLflow "
            "artifact store's s3://bucket/prefix (the tracking server's or app's "
            "ArtifactStoreUri), or unset it to forward artifact calls unchanged."
        )
    prefix = (match["prefix"] or "").strip("/")
    if "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
        raise StoreUriError(
            f"MLFLOW_PROXY_ARTIFACT_STORE_URI={text!r}: the prefix has an empty, '.' or '..' "
            "segment; write it as s3://bucket/some/prefix."
        )
    return ArtifactLocation(bucket=match["bucket"], prefix=prefix)


def safe_path(path: str, *, allow_root: bool = False) -> str:
    """Return `path` (as decoded once by the router) if it stays under the store's root.

    Raises InvalidRequest (400 INVALID_PARAMETER_VALUE, as MLflow's server answers) otherwise.
    """
    if path == "" and allow_root:
        return path
    decoded = path
    for _ in range(_PERCENT_DECODING_ROUNDS):
        _check(path, decoded)
        once_more = unquote(decoded)
        if once_more == decoded:
            return path
        decoded = once_more
    raise InvalidRequest(f"Invalid artifact path {path!r}: it is percent-encoded too many times.")


def _check(original: str, path: str) -> None:
    problem = None
    if path == "":
        problem = "it is empty"
    elif path.startswith("/") or _DRIVE.match(path):
        problem = "it is absolute; artifact paths are relative to the artifact store"
    elif "\\" in path:
        problem = "it contains a backslash"
    elif any(ord(character) < 0x20 or character == "\x7f" for character in path):
        problem = "it contains a control character"
    else:
        segments = path.split("/")
        if any(segment in (".", "..") for segment in segments):
            problem = "it has a '.' or '..' segment"
        elif "" in segments:
            problem = "it has an empty segment ('//' or a trailing '/')"
    if problem:
        raise InvalidRequest(f"Invalid artifact path {original!r}: {problem}.")
