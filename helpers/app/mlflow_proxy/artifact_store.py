"""The artifact store in S3, read and written with the proxy's own role (botocore's S3 client).

Bodies never sit whole in memory: downloads are relayed chunk by chunk from GetObject. An upload
that fits in one part (PART_BYTES) is one PutObject of the spooled body. A longer one of known
length, up to S3's 5 GiB limit for one PutObject, is one PutObject streamed: the caller's bytes go
on to S3 as they arrive, so the object appears whole or not at all. A chunked body, or a longer
one, is a multipart upload of PART_BYTES parts, each sent by a thread of the process's shared pool
while the request's thread receives the next (at most PARTS_IN_FLIGHT parts per upload held at
once). The arithmetic and the trade-offs are in docs/artifacts-and-ui.md#uploads-memory-and-threads.
For the multipart endpoints the caller uploads the parts itself, straight to S3, through presigned
UploadPart URLs. Every operation takes a path already checked by artifact_location.safe_path; the
keys it touches are under the store's root and nowhere else.
"""

import io
import logging
import posixpath
import tempfile
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import IO, Callable, Iterator, Optional

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, UnseekableStreamError

from mlflow_proxy.artifact_location import ArtifactLocation, safe_path
from mlflow_proxy.config import DEFAULT_MAX_ARTIFACT_BYTES
from mlflow_proxy.credentials import ClientOnFirstUse
from mlflow_proxy.errors import (
    AwsRefused,
    BodyTooLarge,
    InvalidRequest,
    ProxyError,
    ResourceNotFound,
    UpstreamUnreachable,
)

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
# gunicorn reads a body of known length ahead, up to 1 MiB per recv (SocketUnreader.
# max_body_chunk), and copies what it holds ahead on every read: read 64 KiB at a time, each
# byte was copied about 16 times, the largest CPU cost of an upload in a py-spy profile.
RECEIVE_BYTES = 1024 * 1024
# Handed on at most this much at a time by a streamed upload's body (_Relayed): over HTTPS
# botocore's aws-chunked encoder re-slices what it holds for every 16 KiB urllib3 takes from it,
# 4.4 ms of CPU per MiB when given 1 MiB at once, 1.1 ms given 256 KiB (measured in-process).
SEND_BYTES = 256 * 1024
# S3 wants parts of at least 5 MiB (all but the last); 8 MiB bounds memory per upload.
PART_BYTES = 8 * 1024 * 1024
MAX_PARTS = 10_000  # S3's limit
MAX_PUT_BYTES = 5 * 1024**3  # S3's limit for one PutObject
# Parts of one upload held at once (each a temporary file, _spool_up_to): the one being received
# from the caller and two on their way to S3. One would already overlap receiving and sending;
# the second keeps the caller's bytes flowing while one part waits for a slow S3 answer.
PARTS_IN_FLIGHT = 3
# Threads per process that send parts to S3, shared by all uploads: an upload adds no thread of
# its own, and its parts wait their turn here when every sender is busy.
PART_SENDERS = 16
# A presigned URL dies with the credentials that signed it. The role's credentials are refreshed
# when 15 minutes are left (botocore's advisory refresh), so 15 minutes is what they guarantee.
PRESIGNED_URL_SECONDS = 15 * 60
# SigV4 for every call and presigned URL: SSE-KMS objects refuse anything else. Checksums only
# where S3 requires them or the proxy asks (PUT_CHECKSUM): a presigned part URL must not demand
# one the caller cannot compute. Bodies are not SHA-256 hashed into the signature
# (UNSIGNED-PAYLOAD): a streamed body cannot be hashed before it is sent, and every S3 endpoint of
# AWS is HTTPS (the bucket policy refuses anything else), whose TLS records guard every byte.
S3_CLIENT_CONFIG = Config(
    signature_version="s3v4",
    request_checksum_calculation="when_required",
    s3={"payload_signing_enabled": False},
    retries={"mode": "standard"},
)
# Over HTTPS, botocore sends a PutObject body as aws-chunked with a CRC32 trailer, computed as the
# bytes go, which S3 checks before it stores the object (boto3's default for uploads). Over plain
# HTTP (only a local S3) botocore would put it in a header instead, computed by reading the whole
# body first, which a streamed body cannot give twice: there, no checksum.
PUT_CHECKSUM = {"ChecksumAlgorithm": "CRC32"}


def s3_client_config(connections: int) -> Config:
    """S3_CLIENT_CONFIG with a connection for each of the worker's calls (config.connections)
    and each part sender: botocore's default pool of 10 would open and drop connections beyond 10
    transfers."""
    return S3_CLIENT_CONFIG.merge(Config(max_pool_connections=connections + PART_SENDERS))


_NOT_FOUND = {"NoSuchKey", "NotFound", "404"}
_BAD_MULTIPART = {"NoSuchUpload", "InvalidPart", "InvalidPartOrder", "EntityTooSmall"}


@dataclass
class Download:
    chunks: Iterator[bytes]
    length: int
    # Also for a response whose body is never iterated (HEAD): the connection goes back.
    close: Callable[[], None]


class ArtifactStore:
    def __init__(
        self,
        location: ArtifactLocation,
        create_client: Callable[[], object],
        max_upload_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES,
    ):
        self.location = location
        self.max_upload_bytes = max_upload_bytes
        self._client = ClientOnFirstUse(create_client)
        # Made in the worker, after gunicorn has forked it: threads do not survive a fork.
        self._part_senders = ClientOnFirstUse(
            lambda: ThreadPoolExecutor(PART_SENDERS, thread_name_prefix="s3-part-sender")
        )

    @property
    def _s3(self):
        return self._client.get()

    def _object(self, path: str) -> dict:
        return {"Bucket": self.location.bucket, "Key": self.location.key(path)}

    # -- MLflow's artifact service: download, upload, list, delete ---------------------------

    def download(self, path: str) -> Download:
        with _s3_errors(path):
            response = self._s3.get_object(**self._object(path))
        body = response["Body"]

        def chunks():
            with _s3_errors(path):
                yield from body.iter_chunks(CHUNK_BYTES)

        return Download(
            chunks(),
            response["ContentLength"],
            body.close,
        )

    def upload(
        self,
        path: str,
        stream: IO[bytes],
        content_type: Optional[str] = None,
        length: Optional[int] = None,
    ) -> int:
        """Store the stream at `path`; returns the number of bytes stored. `length` is what the
        caller declared (Content-Length), None for a chunked body.

        Raises BodyTooLarge, leaving nothing stored, once the stream passes max_upload_bytes.
        """
        target = self._object(path)
        if content_type:
            target["ContentType"] = content_type
        checksum = PUT_CHECKSUM if self._s3.meta.endpoint_url.startswith("https://") else {}
        stream = _Capped(stream, self.max_upload_bytes)
        first, received = _spool_up_to(stream, PART_BYTES)
        with _s3_errors(path), first:
            if received < PART_BYTES:
                self._s3.put_object(Body=first, **checksum, **target)
                return received
            if length is not None and length <= MAX_PUT_BYTES:
                self._put_streamed({**target, **checksum}, _Relayed(first, stream), length)
                return length
            # No checksum for parts: each part's would have to be named on completion.
            return self._upload_in_parts(target, first, stream)

    def _put_streamed(self, target: dict, body: "_Relayed", length: int) -> None:
        try:
            self._s3.put_object(Body=body, ContentLength=length, **target)
        except (BotoCoreError, ClientError) as error:
            # botocore reports anything raised while it sends as its own (HTTPClientError),
            # then fails to rewind: when it was the caller's body that went wrong, say so.
            if body.caller_failure:
                raise body.caller_failure from None
            if isinstance(error, UnseekableStreamError):
                logger.warning(
                    "S3 failed the upload of %s after the proxy had relayed past its first part, "
                    "which cannot be sent again; nothing was stored.",
                    target["Key"],
                )
                raise UpstreamUnreachable(
                    "The artifact store failed the upload part-way; nothing was stored. "
                    "Send it again."
                ) from error
            raise

    def _upload_in_parts(self, target: dict, part, stream: IO[bytes]) -> int:
        upload_id = self._s3.create_multipart_upload(**target)["UploadId"]
        object_only = {"Bucket": target["Bucket"], "Key": target["Key"], "UploadId": upload_id}
        senders = self._part_senders.get()
        sending: dict[Future, tuple[int, IO[bytes]]] = {}  # parts S3 has not acknowledged yet
        etags: dict[int, str] = {}
        try:
            size, length = 0, PART_BYTES
            while length:
                number = len(etags) + len(sending) + 1
                if number > MAX_PARTS:
                    raise InvalidRequest(
                        f"The artifact is larger than {MAX_PARTS * PART_BYTES} bytes."
                    )
                future = senders.submit(self._send_part, object_only, number, part)
                sending[future] = (number, part)
                size += length
                _await_parts(sending, etags, PARTS_IN_FLIGHT - 1)  # room for the next one
                part, length = _spool_up_to(stream, PART_BYTES)
            part.close()
            _await_parts(sending, etags, 0)
            self._s3.complete_multipart_upload(
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
                },
                **object_only,
            )
            return size
        except BaseException:
            # A part still being sent may land after the abort and be kept (S3 says to abort
            # again then): wait for those, and drop those not begun, before aborting.
            for future in sending:
                future.cancel()
            wait(sending)
            for _, spool in sending.values():
                spool.close()
            # A half-done upload keeps its parts (and costs) until aborted.
            try:
                self._s3.abort_multipart_upload(**object_only)
            except (BotoCoreError, ClientError) as error:
                logger.warning("Could not abort multipart upload of %s: %s", target["Key"], error)
            raise

    def _send_part(self, object_only: dict, number: int, part: IO[bytes]) -> str:
        with part:
            return self._s3.upload_part(Body=part, PartNumber=number, **object_only)["ETag"]

    def list_files(self, path: str) -> list[dict]:
        """MLflow's FileInfo list of what is directly under `path` ('' = the root).

        A path that names a file lists as empty, as MLflow's S3 repository does.
        """
        directory = self.location.key(path)
        listed_prefix = f"{directory}/" if directory else ""
        files = []
        paginator = self._s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.location.bucket, Prefix=listed_prefix, Delimiter="/"
        )
        with _s3_errors(path):
            for page in pages:
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(listed_prefix) :].rstrip("/")
                    files.append({"path": name, "is_dir": True})
                for item in page.get("Contents", []):
                    name = item["Key"][len(listed_prefix) :]
                    if name:  # the "directory" object some tools create
                        files.append({"path": name, "is_dir": False, "file_size": item["Size"]})
        return files

    def download_url(self, path: str, seconds: int, response_headers: dict) -> str:
        """A presigned GetObject URL of the file at `path`, valid for `seconds`, whose response
        carries `response_headers` (GetObject's Response* overrides, e.g. ResponseContentType).

        The file is looked up first (HeadObject), so that a missing one is MLflow's 404 here and
        not S3's XML after the redirect. Signing itself asks S3 nothing.
        """
        target = self._object(path)
        with _s3_errors(path):
            self._s3.head_object(**target)
            return self._s3.generate_presigned_url(
                "get_object", Params={**target, **response_headers}, ExpiresIn=seconds
            )

    def delete(self, path: str) -> None:
        """Delete the file at `path`, or everything under it if it is a directory."""
        key = self.location.key(path)
        paginator = self._s3.get_paginator("list_objects_v2")
        with _s3_errors(path):
            keys = [key]
            for page in paginator.paginate(Bucket=self.location.bucket, Prefix=f"{key}/"):
                keys += [item["Key"] for item in page.get("Contents", [])]
            for start in range(0, len(keys), 1000):  # DeleteObjects takes 1000 keys at most
                self._s3.delete_objects(
                    Bucket=self.location.bucket,
                    Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True},
                )

    # -- multipart uploads the caller performs against S3 itself -----------------------------

    def create_multipart(self, directory: str, file_name: str, num_parts: int) -> dict:
        if not 1 <= num_parts <= MAX_PARTS:
            raise InvalidRequest(f"num_parts must be between 1 and {MAX_PARTS}, got {num_parts}.")
        path = _file_path(directory, file_name)
        with _s3_errors(path):
            upload_id = self._s3.create_multipart_upload(**self._object(path))["UploadId"]
            credentials = [
                {
                    "url": self._s3.generate_presigned_url(
                        "upload_part",
                        Params={**self._object(path), "UploadId": upload_id, "PartNumber": number},
                        ExpiresIn=PRESIGNED_URL_SECONDS,
                    ),
                    "part_number": number,
                    "headers": {},
                }
                for number in range(1, num_parts + 1)
            ]
        return {"upload_id": upload_id, "credentials": credentials}

    def complete_multipart(
        self, directory: str, file_name: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        path = _file_path(directory, file_name)
        with _s3_errors(path):
            self._s3.complete_multipart_upload(
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]
                },
                **self._object(path),
            )

    def abort_multipart(self, directory: str, file_name: str, upload_id: str) -> None:
        path = _file_path(directory, file_name)
        with _s3_errors(path):
            self._s3.abort_multipart_upload(UploadId=upload_id, **self._object(path))


def too_large(limit: int) -> str:
    return (
        f"The artifact is larger than {limit} bytes, the proxy's limit "
        "(MLFLOW_PROXY_MAX_ARTIFACT_BYTES)."
    )


def _file_path(directory: str, file_name: str) -> str:
    # MLflow's client sends the local file's full path; only its name lands in the store.
    return safe_path(posixpath.join(directory, file_name.replace("\\", "/").rsplit("/", 1)[-1]))


def _await_parts(sending: dict, etags: dict, at_most: int) -> None:
    """Wait until at most `at_most` parts are unacknowledged, moving each acknowledged part's
    ETag to `etags`; raises the first failure of a part."""
    while True:
        for future in [future for future in sending if future.done()]:
            number, _ = sending.pop(future)
            etags[number] = future.result()
        if len(sending) <= at_most:
            return
        wait(sending, return_when=FIRST_COMPLETED)


def _spool_up_to(stream: IO[bytes], size: int):
    """Up to `size` bytes of the stream in a temporary file (memory up to 1 MiB), and its length."""
    spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)
    length = 0
    while length < size:
        chunk = stream.read(min(RECEIVE_BYTES, size - length))
        if not chunk:
            break
        spool.write(chunk)
        length += len(chunk)
    spool.seek(0)
    return spool, length


class _Relayed:
    """The body of a streamed PutObject: the spooled first part, then the rest of the caller's
    body as it arrives, RECEIVE_BYTES at a time, handed on in slices of what was received
    (memoryviews: no copy), no larger than the sender asks for or SEND_BYTES.

    It rewinds, for botocore's retries, only while it is still within the first part: the
    caller's later bytes are not kept. A failure after that fails the upload (botocore's
    UnseekableStreamError), and nothing is stored: S3 stores no PutObject whose body ended short.
    """

    def __init__(self, first: IO[bytes], rest: IO[bytes]):
        self._first = first
        self._rest = rest
        self._received = memoryview(b"")
        self._past_first = False
        self.caller_failure: Optional[ProxyError] = None  # the body cut short, stalled, too large

    def read(self, size: Optional[int] = -1):
        if size is None or size < 0 or size > SEND_BYTES:
            size = SEND_BYTES
        if not self._past_first:
            chunk = self._first.read(size)
            if chunk:
                return chunk
            self._past_first = True
        if not self._received:
            try:
                self._received = memoryview(self._rest.read(RECEIVE_BYTES))
            except ProxyError as failure:
                self.caller_failure = failure
                raise
        piece, self._received = self._received[:size], self._received[size:]
        return piece

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> None:
        if self._past_first or (offset, whence) != (0, io.SEEK_SET):
            raise io.UnsupportedOperation("Only the first part of an upload can be sent again.")
        self._first.seek(0)


class _Capped:
    """A stream that raises BodyTooLarge as soon as more than `limit` bytes are read from it."""

    def __init__(self, stream: IO[bytes], limit: int):
        self._stream = stream
        self._limit = limit
        self._read = 0

    def read(self, size: int) -> bytes:
        chunk = self._stream.read(size)
        self._read += len(chunk)
        if self._read > self._limit:
            raise BodyTooLarge(too_large(self._limit))
        return chunk


class _s3_errors:
    """Translate S3's refusals into MLflow-shaped errors, naming the artifact path."""

    def __init__(self, path: str):
        self._path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", "")
            if code in _NOT_FOUND:
                raise ResourceNotFound(f"No artifact at {self._path!r}.") from error
            if code in _BAD_MULTIPART:
                raise InvalidRequest(f"{self._path!r}: S3 refused the upload: {code}: {message}") from error
            logger.error("S3 refused an operation on %r: %s", self._path, error)
            raise AwsRefused(
                f"The artifact store refused the operation on {self._path!r} ({code}); "
                "see the proxy's log."
            ) from error
        if isinstance(error, BotoCoreError):
            logger.error("Cannot reach the artifact store for %r: %s", self._path, error)
            raise UpstreamUnreachable(f"Cannot reach the artifact store: {error}") from error
        return False
