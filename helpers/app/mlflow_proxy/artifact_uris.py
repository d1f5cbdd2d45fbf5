"""The artifact store's s3:// URIs as callers see them: mlflow-artifacts:/ URIs served by the proxy.

SageMaker's MLflow hands out `s3://bucket/prefix/...` artifact URIs, which a client without AWS
credentials cannot use. In JSON coming back from upstream, a value starting `s3://bucket/prefix/`
becomes `mlflow-artifacts:/...`, so the MLflow client sends its artifact calls to the proxy; in
JSON going up, the reverse, so SageMaker only ever stores s3:// URIs. URIs of any other bucket
or prefix are left alone: the pattern ends with the prefix's '/', so `s3://bucket/prefix2/`
never matches.

Only the values of the keys MLflow 3.17's REST API keeps artifact URIs in are mapped (URI_KEYS,
the string fields of mlflow/protos that hold one); a param, a tag or a metric name that happens
to hold such a URI is data and goes through untouched. A key is matched with its quotes and
colon, so text inside a string value (where quotes are escaped) never matches. JSON's optional
escapes are not undone: a URI written `s3:\\/\\/bucket` is left alone, and neither MLflow's
server nor its client writes one.

The rewrite works on the byte stream, chunk by chunk, so bodies stay streamed.
"""

import re
from typing import Iterable, Iterator, Optional

from mlflow_proxy.artifact_location import ArtifactLocation

CALLER_ROOT = b"mlflow-artifacts:/"
# RunInfo/LoggedModelInfo.artifact_uri, Experiment.artifact_location, ModelVersion.source,
# ListArtifacts.root_uri, GetModelVersionDownloadUri.artifact_uri.
URI_KEYS = ("artifact_uri", "artifact_location", "source", "root_uri")
# JSON allows any whitespace around the colon; a bound keeps the held-back tail bounded.
# Serialisers write at most a space or an indented line break there.
_MAX_WHITESPACE = 32


class UriValueRewrite:
    """Replace `old` with `new` where it starts the value of one of URI_KEYS, across chunks.

    Between chunks, only the last (longest match - 1) bytes not yet matched are held back: a
    match can start there and end in the next chunk, and nowhere else.
    """

    def __init__(self, old: bytes, new: bytes):
        if not old:
            raise ValueError("nothing to replace")
        keys = b"|".join(re.escape(key.encode()) for key in URI_KEYS)
        space = rb"[ \t\r\n]{0,%d}" % _MAX_WHITESPACE
        self._pattern = re.compile(rb'("(?:%s)"%s:%s")%s' % (keys, space, space, re.escape(old)))
        longest_key = max(len(key) for key in URI_KEYS)
        self._longest_match = longest_key + 2 + 2 * _MAX_WHITESPACE + 2 + len(old)
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
    """Both directions of the mapping for one artifact store."""

    def __init__(self, location: ArtifactLocation):
        store_root = location.s3_root.encode()
        self.to_caller = UriValueRewrite(store_root, CALLER_ROOT)
        self.to_upstream = UriValueRewrite(CALLER_ROOT, store_root)


def is_json(content_type: Optional[str]) -> bool:
    """MLflow's REST API speaks application/json; artifact bytes are never rewritten."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"
