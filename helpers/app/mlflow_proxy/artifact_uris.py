"""The artifact store's s3:// URIs as callers see them: mlflow-artifacts:/ URIs served by the proxy.

SageMaker's MLflow hands out `s3://bucket/prefix/...` artifact URIs, which a client without AWS
credentials cannot use. In JSON coming back from upstream, `s3://bucket/prefix/` becomes
`mlflow-artifacts:/`, so the MLflow client sends its artifact calls to the proxy; in JSON going
up, the reverse, so SageMaker only ever stores s3:// URIs. URIs of any other bucket or prefix
are left alone: the pattern ends with the prefix's '/', so `s3://bucket/prefix2/` never matches.

The replacement works on the byte stream, chunk by chunk, so bodies stay streamed.
"""

from typing import Iterable, Iterator, Optional

from mlflow_proxy.artifact_location import ArtifactLocation

CALLER_ROOT = b"mlflow-artifacts:/"


class StreamingReplace:
    """Replace every occurrence of `old` with `new` across chunk boundaries.

    Only the last len(old) - 1 bytes not yet matched are held back between chunks: a match can
    start there and end in the next chunk, and nowhere else.
    """

    def __init__(self, old: bytes, new: bytes):
        if not old:
            raise ValueError("nothing to replace")
        self._old = old
        self._new = new

    def __call__(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        held = b""
        for chunk in chunks:
            data = held + chunk
            replaced, held = self._replace_complete_matches(data)
            if replaced:
                yield replaced
        if held:
            yield held

    def _replace_complete_matches(self, data: bytes) -> tuple[bytes, bytes]:
        pieces = []
        start = 0
        while (found := data.find(self._old, start)) != -1:
            pieces += [data[start:found], self._new]
            start = found + len(self._old)
        keep = min(len(data) - start, len(self._old) - 1)
        pieces.append(data[start : len(data) - keep])
        return b"".join(pieces), data[len(data) - keep :]


class UriMapping:
    """Both directions of the mapping for one artifact store."""

    def __init__(self, location: ArtifactLocation):
        store_root = location.s3_root.encode()
        self.to_caller = StreamingReplace(store_root, CALLER_ROOT)
        self.to_upstream = StreamingReplace(CALLER_ROOT, store_root)


def is_json(content_type: Optional[str]) -> bool:
    """MLflow's REST API speaks application/json; artifact bytes are never rewritten."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"
