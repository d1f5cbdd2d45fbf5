"""MLflow's artifact service (/api/2.0/mlflow-artifacts/...), served by the proxy from S3.

The request and response shapes are those of MLflow 3.17's own server (mlflow/server/handlers.py:
_download_artifact, _upload_artifact, _list_artifacts_mlflow_artifacts,
_delete_artifact_mlflow_artifacts, _create/_complete/_abort_multipart_upload_artifact), so the
stock client's HttpArtifactRepository talks to the proxy as it would to `mlflow server
--serve-artifacts`. Each view authorises the caller first (a read-only token may only GET).
"""

import json
from typing import Callable

from flask import Flask, Response, g, jsonify, request
from werkzeug.routing import PathConverter

from mlflow_proxy.artifact_location import safe_path
from mlflow_proxy.artifact_store import ArtifactStore
from mlflow_proxy.errors import EndpointNotFound, InvalidRequest

ARTIFACT_PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
# The multipart requests are small JSON documents; complete carries one entry per part.
MAX_JSON_BYTES = 16 * 1024 * 1024


class _AnyPath(PathConverter):
    """Also a path that starts with '/': werkzeug's own converter would not match it, and the
    request would fall through to forwarding instead of being refused by safe_path."""

    regex = ".+?"
    part_isolating = False  # spans segments; werkzeug infers otherwise from a regex without '/'


def register_artifact_routes(app: Flask, store: ArtifactStore, authorize: Callable[[], object]):
    """Serve the artifact API from `store`; `authorize()` raises unless the caller may proceed.

    Every other path under the artifact API is a 404 here: none of it goes to SageMaker, which
    does not serve artifacts.
    """
    app.url_map.converters["artifact_path"] = _AnyPath

    def download(artifact_path):
        authorize()
        found = store.download(safe_path(artifact_path))
        exchange = g.exchange  # the body is sent after the request context has gone

        def counted():
            for chunk in found.chunks:
                exchange.bytes_out += len(chunk)
                yield chunk

        response = Response(
            counted(),
            content_type=found.content_type,
            headers={"Content-Length": str(found.length)},
            direct_passthrough=True,
        )
        response.call_on_close(found.close)
        return response

    def upload(artifact_path):
        authorize()
        path = safe_path(artifact_path)
        g.exchange.bytes_in = store.upload(path, request.stream, request.content_type)
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
            ("/<artifact_path:rest>", not_served, ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
        ]
        for rule, view, methods in routes:
            app.add_url_rule(
                prefix + rule,
                endpoint=f"artifacts {view.__name__} {prefix}",
                view_func=view,
                methods=methods,
            )


def _json_body() -> dict:
    data = request.stream.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise InvalidRequest(f"The request body is larger than {MAX_JSON_BYTES} bytes.")
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
    if not all(isinstance(part, dict) for part in parts):
        raise InvalidRequest("Each of 'parts' must be an object with part_number and etag.")
    return [(_integer(part, "part_number"), _string(part, "etag")) for part in parts]
