"""The artifact store's s3:// URIs as callers see them: mlflow-artifacts:/ URIs served by the proxy.

SageMaker's MLflow hands out `s3://bucket/prefix/...` artifact URIs, which a client without AWS
credentials cannot use. In JSON coming back from upstream, a value starting `s3://bucket/prefix/`
becomes `mlflow-artifacts:/...`, so the MLflow client sends its artifact calls to the proxy; in
JSON going up, the reverse, so SageMaker only ever stores s3:// URIs. URIs of any other bucket
or prefix are left alone: the pattern ends with the prefix's '/', so `s3://bucket/prefix2/`
never matches.

Only the fields of URI_FIELDS are mapped: the string fields in which MLflow's REST API keeps
an artifact URI. A param, a tag or a metric name that happens to hold such a URI is data and
goes through untouched. A field is matched with its quotes and colon, so text inside a string
value (where quotes are escaped) never matches. JSON's optional escapes are not undone: a URI
written `s3:\\/\\/bucket` is left alone, and neither MLflow's server nor its client writes one.
When a new MLflow version brings a field that holds an artifact URI, add it to URI_FIELDS and
an example of it to the test that walks the list (docs/mlflow3.md, "A new URI field").

The rewrite works on the byte stream, chunk by chunk, so bodies stay streamed.
"""

import json
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

from mlflow_proxy.artifact_location import ArtifactLocation
from mlflow_proxy.routes import api_path

CALLER_ROOT = b"mlflow-artifacts:/"
# JSON allows any whitespace around a colon or comma; a bound keeps the held-back tail bounded.
# Serialisers write at most a space or an indented line break there.
_MAX_WHITESPACE = 32
_SPACE = rb"[ \t\r\n]{0,%d}" % _MAX_WHITESPACE


@dataclass(frozen=True)
class UriField:
    """A string field of MLflow's REST API whose value is an artifact URI."""

    name: str
    carried_by: str  # the MLflow messages that carry it, for whoever updates the list
    # False: a member, `"name": "<uri>"`. True: an entry of a key/value tag list,
    # `{"key": "name", "value": "<uri>"}`, where any tag of that name would match: such a
    # field is only mapped in the bodies of the paths under `only_under`.
    tag_entry: bool = False
    only_under: Optional[str] = None  # a path prefix in its /api/ form (routes.api_path)

    def lead(self) -> tuple[bytes, int]:
        """The pattern of what precedes the URI, and the most bytes it can match."""
        name = json.dumps(self.name).encode()
        if self.tag_entry:
            pieces = [b'"key"', b":", name, b",", b'"value"', b":", b'"']
        else:
            pieces = [name, b":", b'"']
        pattern = _SPACE.join(re.escape(piece) for piece in pieces)
        return pattern, sum(map(len, pieces)) + (len(pieces) - 1) * _MAX_WHITESPACE


URI_FIELDS = (
    UriField("artifact_uri", "RunInfo, LoggedModelInfo, GetModelVersionDownloadUri.Response"),
    UriField("artifact_location", "Experiment, CreateExperiment"),
    UriField("source", "ModelVersion, CreateModelVersion"),
    UriField("root_uri", "ListArtifacts.Response, ListLoggedModelArtifacts.Response"),
    # Where the client writes a trace's spans (traces.json) when it does not send them by OTLP.
    UriField("mlflow.artifactLocation", "TraceInfoV3.tags (a map): MLflow 3 traces"),
    UriField(
        "mlflow.artifactLocation",
        "TraceInfo.tags (a key/value list): the V2 trace API of MLflow 2 clients",
        tag_entry=True,
        only_under="/api/2.0/mlflow/traces",
    ),
)


def fields_for(path: str) -> tuple[UriField, ...]:
    """The fields mapped in the bodies of requests to `path` and of their responses."""
    path = api_path(path)
    return tuple(
        field
        for field in URI_FIELDS
        if field.only_under is None or path.startswith(field.only_under)
    )


class UriValueRewrite:
    """Replace `old` with `new` where it starts the value of one of `fields`, across chunks.

    Between chunks, only the last (longest match - 1) bytes not yet matched are held back: a
    match can start there and end in the next chunk, and nowhere else.
    """

    def __init__(self, old: bytes, new: bytes, fields: Iterable[UriField] = URI_FIELDS):
        if not old:
            raise ValueError("nothing to replace")
        leads = [field.lead() for field in fields]
        either = b"|".join(pattern for pattern, _ in leads)
        self._pattern = re.compile(rb"((?:%s))%s" % (either, re.escape(old)))
        self._longest_match = max(length for _, length in leads) + len(old)
        self._new = new

    def __call__(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        held = b""
        for chunk in chunks:
            rewritten, held = self._rewrite_complete_matches(held + chunk)
            if rewritten:
                yield rewritten
        if held:
            yield held

    def _rewrite_complete_matches(self, data: bytes) -> tuple[bytes, bytes]:
        pieces = []
        start = 0
        for match in self._pattern.finditer(data):
            pieces += [data[start : match.start()], match[1], self._new]
            start = match.end()
        keep = min(len(data) - start, self._longest_match - 1)
        pieces.append(data[start : len(data) - keep])
        return b"".join(pieces), data[len(data) - keep :]


class UriMapping:
    """Both directions of the mapping for one artifact store, for the fields a path carries."""

    def __init__(self, location: ArtifactLocation):
        self._store_root = location.s3_root.encode()
        # One pair of rewrites per set of fields: a handful, built once each.
        self._rewrites: dict[tuple[UriField, ...], tuple[UriValueRewrite, UriValueRewrite]] = {}

    def to_caller(self, path: str) -> UriValueRewrite:
        return self._for(path)[0]

    def to_upstream(self, path: str) -> UriValueRewrite:
        return self._for(path)[1]

    def _for(self, path: str) -> tuple[UriValueRewrite, UriValueRewrite]:
        fields = fields_for(path)
        if fields not in self._rewrites:
            self._rewrites[fields] = (
                UriValueRewrite(self._store_root, CALLER_ROOT, fields),
                UriValueRewrite(CALLER_ROOT, self._store_root, fields),
            )
        return self._rewrites[fields]


def is_json(content_type: Optional[str]) -> bool:
    """MLflow's REST API speaks application/json; artifact bytes are never rewritten."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"
