"""MLflow's artifact service (/api/2.0/mlflow-artifacts/...), served by the proxy from S3.

The request and response shapes are those of MLflow 3.17's own server (mlflow/server/handlers.py:
_download_artifact, _upload_artifact, _list_artifacts_mlflow_artifacts,
_delete_artifact_mlflow_artifacts, _create/_complete/_abort_multipart_upload_artifact), so the
stock client's HttpArtifactRepository talks to the proxy as it would to `mlflow server
--serve-artifacts`. Each view authorises the caller first (a read-only token may only GET).

Downloads are served as MLflow's server serves them (_response_with_file_attachment_headers):
as an attachment, typed from the file's name and never from what the uploader sent, with
nosniff. /ui makes browsers hold the proxy's Basic credentials, so an artifact rendered on the
proxy's origin could call the API as whoever opened it: only types a browser runs no script in
keep their type, everything else is application/octet-stream, and the Content-Security-Policy
sandbox stops scripts should a browser render the body anyway.
"""

import json
import mimetypes
import posixpath
import unicodedata
from typing import Callable, Optional
from urllib.parse import quote

from flask import Flask, Response, g, jsonify, request
from werkzeug.http import quote_header_value
from werkzeug.routing import PathConverter

from mlflow_proxy.artifact_location import safe_path
from mlflow_proxy.artifact_store import MAX_PARTS, ArtifactStore, too_large
from mlflow_proxy.errors import BodyTooLarge, EndpointNotFound, InvalidRequest
from mlflow_proxy.request_body import CallerBody
from mlflow_proxy.routes import ARTIFACT_PREFIXES, METHODS
# The multipart requests are small JSON documents: complete carries one entry per part, about
# 60 bytes each for MAX_PARTS parts.
MAX_JSON_BYTES = 1024 * 1024
# MLflow's text extensions (mlflow/utils/mime_type_utils.py), served as text/plain as it does;
# a name without an extension counts as its own extension, so MLmodel and MLflow's spelling of
# the project file, lower-case `mlproject`, are text (`MLproject` is not: MLflow compares case).
_TEXT_EXTENSIONS = frozenset(
    "txt log err cfg conf cnf cf ini properties prop hocon toml yaml yml xml json js py py3 "
    "csv tsv md rst ipynb MLmodel mlproject".split()
)
# Types no browser runs scripts in; anything else (text/html, image/svg+xml, ...) is served as
# application/octet-stream.
_DISPLAYABLE_TYPES = frozenset(
    {"text/plain", "image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"}
)
# Also on the artifact downloads the server itself serves (routes.SERVER_DOWNLOAD_RULES).
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
}


class _AnyPath(PathConverter):
    """Also a path that starts with '/': werkzeug's own converter would not match it, and the
    request would fall through to forwarding instead of being refused by safe_path."""

    regex = ".+?"
    part_isolating = False  # spans segments; werkzeug infers otherwise from a regex without '/'


def register_artifact_routes(
    app: Flask,
    store: ArtifactStore,
    authorize: Callable[[], object],
    redirect_seconds: Optional[int] = None,
):
    """Serve the artifact API from `store`; `authorize()` raises unless the caller may proceed.

    Every other path under the artifact API is a 404 here: none of it goes to SageMaker, which
    does not serve artifacts. With `redirect_seconds`, a download (GET; HEAD stays here) is
    answered with redirect_to_store().
    """
    app.url_map.converters["artifact_path"] = _AnyPath

    def download(artifact_path):
        authorize()
        if redirect_seconds is not None and request.method == "GET":
            return redirect_to_store(store, artifact_path, redirect_seconds)
        found = store.download(safe_path(artifact_path))
        exchange = g.exchange  # the body is sent after the request context has gone

        def counted():
            for chunk in found.chunks:
                exchange.bytes_out += len(chunk)
                yield chunk

        file_name = posixpath.basename(artifact_path)
        response = Response(
            counted(),
            content_type=download_type(file_name),
            headers={
                "Content-Length": str(found.length),
                "Content-Disposition": attachment(file_name),
                **DOWNLOAD_HEADERS,
            },
            direct_passthrough=True,
        )
        response.call_on_close(found.close)
        return response

    def upload(artifact_path):
        authorize()
        path = safe_path(artifact_path)
        if (request.content_length or 0) > store.max_upload_bytes:
            raise BodyTooLarge(too_large(store.max_upload_bytes))
        store.upload(
            path, CallerBody(request, g.exchange), request.content_type, request.content_length
        )
        return jsonify({})

    def delete(artifact_path):
        authorize()
        store.delete(safe_path(artifact_path))
        return jsonify({})

    def list_artifacts():
        authorize()
        path = safe_path(request.args.get("path", ""), allow_root=True)
        return jsonify(files=store.list_files(path))

    def create_multipart(artifact_path):
        authorize()
        body = _json_body()
        return jsonify(
            store.create_multipart(
                safe_path(artifact_path), _string(body, "path"), _integer(body, "num_parts")
            )
        )

    def complete_multipart(artifact_path):
        authorize()
        body = _json_body()
        store.complete_multipart(
            safe_path(artifact_path),
            _string(body, "path"),
            _string(body, "upload_id"),
            _parts(body),
        )
        return jsonify({})

    def abort_multipart(artifact_path):
        authorize()
        body = _json_body()
        store.abort_multipart(
            safe_path(artifact_path), _string(body, "path"), _string(body, "upload_id")
        )
        return jsonify({})

    def not_served(rest):
        authorize()
        raise EndpointNotFound(f"{request.method} {request.path} is not part of the artifact API.")

    for prefix in ARTIFACT_PREFIXES:
        routes = [
            ("/artifacts", list_artifacts, ["GET"]),
            ("/artifacts/<artifact_path:artifact_path>", download, ["GET"]),
            ("/artifacts/<artifact_path:artifact_path>", upload, ["PUT"]),
            ("/artifacts/<artifact_path:artifact_path>", delete, ["DELETE"]),
            ("/mpu/create/<artifact_path:artifact_path>", create_multipart, ["POST"]),
            ("/mpu/complete/<artifact_path:artifact_path>", complete_multipart, ["POST"]),
            ("/mpu/abort/<artifact_path:artifact_path>", abort_multipart, ["POST"]),
            ("/<artifact_path:rest>", not_served, METHODS),
        ]
        for rule, view, methods in routes:
            app.add_url_rule(
                prefix + rule,
                endpoint=f"artifacts {view.__name__} {prefix}",
                view_func=view,
                methods=methods,
                # Flask would answer OPTIONS itself, before any token is checked.
                provide_automatic_options=False,
            )


def redirect_to_store(store: ArtifactStore, artifact_path: str, seconds: int) -> Response:
    """A redirect to a presigned S3 URL of the file, which S3 serves named and typed as the
    proxy's own download is (docs/artifacts-and-ui.md, "Downloads straight from S3").

    307 rather than 302: both are followed with a GET, but 307 forbids changing the method, so
    no client may turn it into anything but the GET the URL is signed for. The URL holds the
    signing role's session token: it is sent in Location only, which the access log does not
    record, and no-store keeps caches from handing it out after it expires.
    """
    file_name = posixpath.basename(artifact_path)
    url = store.download_url(
        safe_path(artifact_path),
        seconds,
        {
            "ResponseContentType": download_type(file_name),
            "ResponseContentDisposition": attachment(file_name),
        },
    )
    return Response(status=307, headers={"Location": url, "Cache-Control": "no-store"})


def download_type(file_name: str) -> str:
    """The Content-Type of a download: MLflow's guess from the name, if displayable."""
    extension = posixpath.splitext(file_name)[1].lstrip(".") or file_name
    if extension in _TEXT_EXTENSIONS:
        return "text/plain"
    guessed, _ = mimetypes.guess_type(file_name)
    return guessed if guessed in _DISPLAYABLE_TYPES else "application/octet-stream"


def attachment(file_name: str) -> str:
    """RFC 6266 Content-Disposition for `file_name`, as MLflow's _content_disposition_attachment."""
    try:
        file_name.encode("ascii")
    except UnicodeEncodeError:
        fallback = (
            unicodedata.normalize("NFKD", file_name).encode("ascii", "ignore").decode("ascii")
            or "download"
        )
        encoded = quote(file_name, safe="!#$&+-.^_`|~")
        return f"attachment; filename={quote_header_value(fallback)}; filename*=UTF-8''{encoded}"
    return f"attachment; filename={quote_header_value(file_name)}"


def _json_body() -> dict:
    refusal = BodyTooLarge(f"The request body is larger than {MAX_JSON_BYTES} bytes.")
    if (request.content_length or 0) > MAX_JSON_BYTES:
        raise refusal
    data = bytearray()
    for chunk in CallerBody(request, g.exchange).chunks():
        data += chunk
        if len(data) > MAX_JSON_BYTES:
            raise refusal
    try:
        body = json.loads(data or b"{}")
    except ValueError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def _string(body: dict, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"Missing value for required parameter '{name}'.")
    return value


def _integer(body: dict, name: str) -> int:
    value = body.get(name)
    try:
        number = int(value)  # protobuf JSON may carry an int64 as a string
    except (TypeError, ValueError):
        raise InvalidRequest(f"Parameter '{name}' must be an integer, got {value!r}.") from None
    if isinstance(value, bool) or str(number) != str(value).strip():
        raise InvalidRequest(f"Parameter '{name}' must be an integer, got {value!r}.")
    return number


def _parts(body: dict) -> list[tuple[int, str]]:
    parts = body.get("parts")
    if not isinstance(parts, list) or not parts:
        raise InvalidRequest("Missing value for required parameter 'parts'.")
    if len(parts) > MAX_PARTS:
        raise InvalidRequest(f"'parts' has {len(parts)} entries; S3 allows at most {MAX_PARTS}.")
    if not all(isinstance(part, dict) for part in parts):
        raise InvalidRequest("Each of 'parts' must be an object with part_number and etag.")
    return [(_integer(part, "part_number"), _string(part, "etag")) for part in parts]
