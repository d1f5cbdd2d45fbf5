"""The S3 side of the artifact service, against a real S3 API (moto_server on loopback)."""

import base64
import hashlib
import io
import os
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import botocore.credentials
import pytest
import requests
from botocore.awsrequest import AWSResponse

from mlflow_proxy import artifact_store
from mlflow_proxy.artifact_location import ArtifactLocation
from mlflow_proxy.artifact_store import S3_CLIENT_CONFIG, ArtifactStore
from mlflow_proxy.errors import (
    AwsRefused,
    BodyTooLarge,
    InvalidRequest,
    MalformedRequest,
    ResourceNotFound,
    UpstreamUnreachable,
)
from proxy_support import all_keys, s3_client

@pytest.fixture
def store(s3_endpoint, bucket):
    return ArtifactStore(ArtifactLocation(bucket, "mlflow/root"), lambda: s3_client(s3_endpoint, S3_CLIENT_CONFIG))


def test_a_small_upload_is_one_object_under_the_prefix(store, s3, bucket):
    stored = store.upload("1/r/artifacts/hello.txt", io.BytesIO(b"hello"), "text/plain")
    assert stored == 5
    assert all_keys(s3, bucket) == ["mlflow/root/1/r/artifacts/hello.txt"]
    found = s3.get_object(Bucket=bucket, Key="mlflow/root/1/r/artifacts/hello.txt")
    assert found["Body"].read() == b"hello"
    assert found["ContentType"] == "text/plain"


def test_a_large_upload_goes_up_in_parts_and_comes_back_identical(store, s3, bucket):
    data = os.urandom(2 * artifact_store.PART_BYTES + 12345)
    assert store.upload("1/r/artifacts/big.bin", io.BytesIO(data)) == len(data)
    head = s3.head_object(Bucket=bucket, Key="mlflow/root/1/r/artifacts/big.bin")
    assert head["ETag"].endswith('-3"')  # S3's mark of an object assembled from 3 parts
    download = store.download("1/r/artifacts/big.bin")
    assert download.length == len(data)
    digest = hashlib.sha256()
    for chunk in download.chunks:
        assert len(chunk) <= artifact_store.CHUNK_BYTES
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


class _FailingStream(io.RawIOBase):
    def __init__(self, good_bytes):
        self._left = good_bytes

    def readable(self):
        return True

    def readinto(self, buffer):
        if self._left <= 0:
            raise ConnectionResetError("the caller went away")
        size = min(len(buffer), self._left)
        buffer[:size] = b"x" * size
        self._left -= size
        return size


def test_an_upload_cut_short_is_aborted_and_leaves_nothing(store, s3, bucket):
    with pytest.raises(ConnectionResetError):
        store.upload("1/r/artifacts/cut.bin", _FailingStream(artifact_store.PART_BYTES + 1000))
    assert all_keys(s3, bucket) == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_listing_gives_mlflow_file_infos_of_one_level(store):
    for path in ["1/r/artifacts/a.txt", "1/r/artifacts/dir/b.txt", "1/r/artifacts/dir/sub/c.txt"]:
        store.upload(path, io.BytesIO(b"12345"))
    assert sorted(store.list_files("1/r/artifacts"), key=lambda f: f["path"]) == [
        {"path": "a.txt", "is_dir": False, "file_size": 5},
        {"path": "dir", "is_dir": True},
    ]
    assert sorted(store.list_files("1/r/artifacts/dir"), key=lambda f: f["path"]) == [
        {"path": "b.txt", "is_dir": False, "file_size": 5},
        {"path": "sub", "is_dir": True},
    ]
    assert store.list_files("") == [{"path": "1", "is_dir": True}]
    assert store.list_files("1/r/artifacts/a.txt") == []  # a file lists as empty, as in MLflow
    assert store.list_files("1/nothing-here") == []


def test_listing_never_shows_what_is_beside_the_prefix(store, s3, bucket):
    s3.put_object(Bucket=bucket, Key="mlflow/rootkit/secret.txt", Body=b"no")
    s3.put_object(Bucket=bucket, Key="elsewhere/secret.txt", Body=b"no")
    store.upload("0/x.txt", io.BytesIO(b"yes"))
    assert store.list_files("") == [{"path": "0", "is_dir": True}]


def test_deleting_a_directory_removes_it_and_nothing_beside_it(store, s3, bucket):
    for path in ["1/r/artifacts/model/MLmodel", "1/r/artifacts/model/data/x.bin",
                 "1/r/artifacts/model2/MLmodel", "1/r/artifacts/model.txt"]:
        store.upload(path, io.BytesIO(b"x"))
    store.delete("1/r/artifacts/model")
    assert all_keys(s3, bucket) == [
        "mlflow/root/1/r/artifacts/model.txt",
        "mlflow/root/1/r/artifacts/model2/MLmodel",
    ]
    store.delete("1/r/artifacts/model.txt")
    assert all_keys(s3, bucket) == ["mlflow/root/1/r/artifacts/model2/MLmodel"]


def test_a_missing_artifact_is_resource_does_not_exist(store):
    with pytest.raises(ResourceNotFound) as missing:
        store.download("1/r/artifacts/nope.txt")
    assert (missing.value.status, missing.value.error_code) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert "1/r/artifacts/nope.txt" in missing.value.message


def test_a_refusal_by_s3_is_reported_without_its_details(s3_endpoint):
    store = ArtifactStore(ArtifactLocation("no-such-bucket-h6", "p"), lambda: s3_client(s3_endpoint, S3_CLIENT_CONFIG))
    with pytest.raises(AwsRefused, match="NoSuchBucket"):
        store.upload("x.txt", io.BytesIO(b"x"))


def test_multipart_parts_go_straight_to_s3_through_presigned_urls(store, s3, bucket):
    part_size = 5 * 1024 * 1024
    data = os.urandom(part_size + 777)
    created = store.create_multipart("1/r/artifacts/dir", "/home/me/work/big.bin", 2)
    assert [credential["part_number"] for credential in created["credentials"]] == [1, 2]
    parts = []
    for credential in created["credentials"]:
        start = (credential["part_number"] - 1) * part_size
        answer = requests.put(
            credential["url"], data=data[start : start + part_size], headers=credential["headers"]
        )
        assert answer.status_code == 200, answer.text
        parts.append((credential["part_number"], answer.headers["ETag"]))
    store.complete_multipart("1/r/artifacts/dir", "/home/me/work/big.bin", created["upload_id"], parts)
    # Only the file's name lands in the store, beside the directory the URL names.
    body = s3.get_object(Bucket=bucket, Key="mlflow/root/1/r/artifacts/dir/big.bin")["Body"]
    assert body.read() == data


def test_an_aborted_multipart_upload_is_gone(store, s3, bucket):
    created = store.create_multipart("1/r/artifacts", "big.bin", 1)
    store.abort_multipart("1/r/artifacts", "big.bin", created["upload_id"])
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(InvalidRequest, match="NoSuchUpload"):
        store.abort_multipart("1/r/artifacts", "big.bin", "no-such-upload-id")


@pytest.mark.parametrize("file_name", ["..", "", "C:\\Users\\me\\..", "."])
def test_a_multipart_file_name_cannot_leave_the_directory(store, file_name):
    with pytest.raises(InvalidRequest, match="Invalid artifact path"):
        store.create_multipart("1/r/artifacts", file_name, 1)


@pytest.mark.parametrize("num_parts", [0, -1, 10_001])
def test_the_number_of_parts_is_bounded_by_s3s_limits(store, num_parts):
    with pytest.raises(InvalidRequest, match="num_parts"):
        store.create_multipart("1/r/artifacts", "big.bin", num_parts)


@pytest.mark.parametrize("size", [101, 2 * artifact_store.PART_BYTES])
def test_an_upload_past_the_limit_is_refused_and_leaves_nothing(s3_endpoint, s3, bucket, size):
    limit = 100 if size == 101 else artifact_store.PART_BYTES + 1  # within one part, or past it
    capped = ArtifactStore(
        ArtifactLocation(bucket, "mlflow/root"),
        lambda: s3_client(s3_endpoint, S3_CLIENT_CONFIG),
        max_upload_bytes=limit,
    )
    with pytest.raises(BodyTooLarge, match="MLFLOW_PROXY_MAX_ARTIFACT_BYTES"):
        capped.upload("0/too-big.bin", io.BytesIO(b"x" * size))
    assert all_keys(s3, bucket) == []
    # The multipart upload begun for the first part was aborted, not left to cost.
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert capped.upload("0/fits.bin", io.BytesIO(b"x" * limit)) == limit


def test_presigned_part_urls_live_no_longer_than_the_signing_credentials_are_kept(store):
    created = store.create_multipart("1/r/artifacts", "big.bin", 1)
    query = parse_qs(urlsplit(created["credentials"][0]["url"]).query)
    # Assumed-role credentials are replaced this long before they expire, and the URL dies
    # with the credentials that signed it.
    guaranteed = botocore.credentials.RefreshableCredentials._advisory_refresh_timeout
    assert 0 < int(query["X-Amz-Expires"][0]) <= guaranteed


# -- uploads in parts: receiving overlaps sending, a bounded number of parts at once ------------

# Far longer than any wait here: a hook that needs it has found an upload that does not overlap.
PATIENCE_SECONDS = 30
PART = artifact_store.PART_BYTES


def store_on(s3_endpoint, bucket, **hooks):
    """A store whose S3 client runs `hooks` (botocore event name -> handler)."""
    client = s3_client(s3_endpoint, S3_CLIENT_CONFIG)
    for event, handler in hooks.items():
        client.meta.events.register(event, handler)
    return ArtifactStore(ArtifactLocation(bucket, "mlflow/root"), lambda: client)


class PartsHeld:
    """Counts the parts an upload holds: from when the store starts receiving one from the
    caller until S3 has answered its UploadPart."""

    def __init__(self, monkeypatch):
        self.now = self.peak = 0
        self.all_received = False
        self.changed = threading.Condition()
        receive = artifact_store._spool_up_to

        def receiving(stream, size):
            self._add(1)
            spool, length = receive(stream, size)
            if length < size:
                self.all_received = True
            if not length:  # the end of the body: no part to send
                self._add(-1)
            return spool, length

        monkeypatch.setattr(artifact_store, "_spool_up_to", receiving)

    def _add(self, count):
        with self.changed:
            self.now += count
            self.peak = max(self.peak, self.now)
            self.changed.notify_all()

    def answered(self, **_):  # after-call.s3.UploadPart
        self._add(-1)

    def wait_until_the_bound_is_held(self, **_):  # before-send.s3.UploadPart
        """S3 answers no part until the store holds as many as it may (or has all the body)."""
        with self.changed:
            full = lambda: self.now >= artifact_store.PARTS_IN_FLIGHT or self.all_received
            assert self.changed.wait_for(full, PATIENCE_SECONDS), f"{self.now} parts held"


def test_parts_are_received_while_others_are_sent_never_more_than_the_bound(
    s3_endpoint, s3, bucket, monkeypatch
):
    held = PartsHeld(monkeypatch)
    senders = set()
    store = store_on(
        s3_endpoint,
        bucket,
        **{
            "before-send.s3.UploadPart": held.wait_until_the_bound_is_held,
            "after-call.s3.UploadPart": held.answered,
            "before-call.s3.UploadPart": lambda **_: senders.add(threading.current_thread()),
        },
    )
    data = os.urandom(6 * PART + 4321)
    assert store.upload("1/r/artifacts/big.bin", io.BytesIO(data)) == len(data)
    # S3 held back every part until the store held the bound: it got there, and no further.
    assert held.peak == artifact_store.PARTS_IN_FLIGHT
    assert threading.current_thread() not in senders
    assert len(senders) <= artifact_store.PART_SENDERS
    head = s3.head_object(Bucket=bucket, Key="mlflow/root/1/r/artifacts/big.bin")
    assert head["ETag"].endswith('-7"')
    stored = s3.get_object(Bucket=bucket, Key="mlflow/root/1/r/artifacts/big.bin")["Body"].read()
    assert stored == data  # the parts in their order, whatever order S3 answered them in


def test_an_upload_smaller_than_a_part_is_one_put_object(s3_endpoint, bucket):
    calls = []
    store = store_on(
        s3_endpoint, bucket, **{"before-call.s3": lambda model, **_: calls.append(model.name)}
    )
    assert store.upload("1/r/artifacts/small.bin", io.BytesIO(b"x" * (PART - 1))) == PART - 1
    assert calls == ["PutObject"]


MIB = 1024 * 1024


class _Source(io.BytesIO):
    """The caller's body; fails with what CallerBody raises once `good_bytes` are read."""

    def __init__(self, data, good_bytes=None):
        super().__init__(data)
        self._good = good_bytes

    def read(self, size=-1):
        if self._good is None:
            return super().read(size)
        if self.tell() >= self._good:
            raise MalformedRequest("The request body ended after ... bytes.")
        return super().read(min(size, self._good - self.tell()))


def test_an_upload_of_known_length_is_one_put_object_sent_as_it_arrives(s3_endpoint, s3, bucket):
    calls, received_when_sending = [], []
    data = os.urandom(3 * PART + 4321)
    source = _Source(data)
    store = store_on(
        s3_endpoint,
        bucket,
        **{
            "before-call.s3": lambda model, **_: calls.append(model.name),
            "before-send.s3.PutObject": lambda **_: received_when_sending.append(source.tell()),
        },
    )
    assert store.upload("1/r/artifacts/big.bin", source, length=len(data)) == len(data)
    assert calls == ["PutObject"]
    assert received_when_sending == [PART]  # the first part only: the rest came as it was sent
    head = s3.head_object(Bucket=bucket, Key="mlflow/root/1/r/artifacts/big.bin")
    assert "-" not in head["ETag"]  # one PutObject, not parts assembled
    assert s3.get_object(Bucket=bucket, Key="mlflow/root/1/r/artifacts/big.bin")["Body"].read() == data


def test_a_streamed_upload_whose_body_breaks_off_keeps_the_old_object(s3_endpoint, s3, bucket):
    key = "mlflow/root/1/r/artifacts/model.bin"
    s3.put_object(Bucket=bucket, Key=key, Body=b"the old model")
    store = store_on(s3_endpoint, bucket)
    declared = 3 * PART
    with pytest.raises(MalformedRequest):
        store.upload("1/r/artifacts/model.bin", _Source(os.urandom(declared), PART + 3 * MIB), length=declared)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"the old model"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


S3_INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


def fail_first_attempt_after(sent_bytes):
    """A before-send hook: S3 takes `sent_bytes` of the first attempt's body, then answers 500
    (botocore's standard retries try again); later attempts go to S3."""
    attempts = []

    def hook(request, **_):
        attempts.append(request)
        if len(attempts) > 1:
            return None
        taken = 0
        while taken < sent_bytes and (piece := request.body.read(64 * 1024)):
            taken += len(piece)
        return AWSResponse(request.url, 500, {"Content-Type": "application/xml"}, _Raw(S3_INTERNAL_ERROR))

    return hook, attempts


def test_s3_failing_within_the_first_part_is_retried_from_the_start(s3_endpoint, s3, bucket):
    hook, attempts = fail_first_attempt_after(PART // 2)
    store = store_on(s3_endpoint, bucket, **{"before-send.s3.PutObject": hook})
    data = os.urandom(PART + 5 * MIB)
    assert store.upload("1/r/artifacts/big.bin", _Source(data), length=len(data)) == len(data)
    assert len(attempts) == 2
    assert s3.get_object(Bucket=bucket, Key="mlflow/root/1/r/artifacts/big.bin")["Body"].read() == data


def test_s3_failing_past_the_first_part_fails_the_upload_and_stores_nothing(s3_endpoint, s3, bucket):
    hook, attempts = fail_first_attempt_after(PART + 2 * MIB)
    store = store_on(s3_endpoint, bucket, **{"before-send.s3.PutObject": hook})
    data = os.urandom(PART + 5 * MIB)
    with pytest.raises(UpstreamUnreachable, match="nothing was stored"):
        store.upload("1/r/artifacts/big.bin", _Source(data), length=len(data))
    assert len(attempts) == 1  # the caller's bytes past the first part are gone: no resending
    assert all_keys(s3, bucket) == []


def _aws_chunked(body):
    """The payload and trailer of an aws-chunked body, checked as S3 reads one."""
    payload, pieces = b"", []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        pieces.append(size)
        payload += body[:size]
        assert body[size : size + 2] == b"\r\n"
        body = body[size + 2 :]
    trailer, _, end = body.partition(b"\r\n")
    assert end == b"\r\n"
    name, _, value = trailer.decode().partition(":")
    return payload, pieces, {name: value}


@pytest.mark.parametrize("size", [1000, PART + 3 * MIB + 7], ids=["spooled", "streamed"])
def test_over_https_an_upload_carries_a_crc32_trailer_s3_checks(size):
    # As S3 would receive it: no connection is made, the hook answers for S3.
    client = botocore.session.Session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url="https://s3.stand-in.test",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=S3_CLIENT_CONFIG,
    )
    sent = {}

    def as_s3(request, **_):
        sent["headers"] = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        sent["body"] = b"".join(iter(lambda: request.body.read(16384), b""))
        return AWSResponse(request.url, 200, {"ETag": '"e"'}, _Raw(b""))

    client.meta.events.register("before-send.s3.PutObject", as_s3)
    store = ArtifactStore(ArtifactLocation("bucket", "root"), lambda: client)
    data = os.urandom(size)
    assert store.upload("1/r/artifacts/m.bin", _Source(data), length=size) == size
    headers = sent["headers"]
    assert headers["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert headers["Content-Encoding"] == "aws-chunked"
    assert headers["X-Amz-Trailer"] == "x-amz-checksum-crc32"
    assert headers["X-Amz-Decoded-Content-Length"] == str(size)
    assert "Content-Length" not in headers
    payload, pieces, trailer = _aws_chunked(sent["body"])
    assert payload == data
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert trailer == {"x-amz-checksum-crc32": crc}
    if size > PART:  # not botocore's 1 MiB chunks: its encoder copies what it holds on every read
        assert max(pieces) <= 256 * 1024


class _Raw:
    def __init__(self, body):
        self._body = body

    def stream(self, **_):
        yield self._body


S3_ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message><RequestId>R1</RequestId></Error>"
)


def test_s3_refusing_a_later_part_aborts_the_upload_and_keeps_the_old_object(
    s3_endpoint, s3, bucket
):
    key = "mlflow/root/1/r/artifacts/model.bin"
    s3.put_object(Bucket=bucket, Key=key, Body=b"the old model")

    def refuse_part_3(request, **_):  # what S3 answers, through botocore's parser and retries
        if parse_qs(urlsplit(request.url).query)["partNumber"] == ["3"]:
            headers = {"Content-Type": "application/xml"}
            return AWSResponse(request.url, 403, headers, _Raw(S3_ACCESS_DENIED))
        return None

    store = store_on(s3_endpoint, bucket, **{"before-send.s3.UploadPart": refuse_part_3})
    with pytest.raises(AwsRefused, match="AccessDenied"):
        store.upload("1/r/artifacts/model.bin", io.BytesIO(os.urandom(5 * PART)))
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"the old model"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# Cut while receiving the first part beyond the bound: the parts before it are all on their way.
PARTS_BEFORE_THE_CUT = artifact_store.PARTS_IN_FLIGHT - 1


@pytest.mark.parametrize(
    "senders, parts_sent", [(1, 1), (artifact_store.PART_SENDERS, PARTS_BEFORE_THE_CUT)]
)
def test_a_body_cut_short_with_parts_on_their_way_waits_for_them_then_aborts(
    s3_endpoint, s3, bucket, monkeypatch, senders, parts_sent
):
    """Parts not yet begun are dropped; those being sent finish before the abort, which S3 would
    otherwise have to repeat (a part that lands after an abort is kept)."""
    monkeypatch.setattr(artifact_store, "PART_SENDERS", senders)
    cut = threading.Event()
    events = []

    class CutShort(_FailingStream):
        def readinto(self, buffer):
            try:
                return super().readinto(buffer)
            except ConnectionResetError:
                cut.set()
                raise

    def hold_until_cut(**_):
        assert cut.wait(PATIENCE_SECONDS)

    store = store_on(
        s3_endpoint,
        bucket,
        **{
            "before-send.s3.UploadPart": hold_until_cut,
            "after-call.s3.UploadPart": lambda **_: events.append("part sent"),
            "before-call.s3.AbortMultipartUpload": lambda **_: events.append("abort"),
        },
    )
    with pytest.raises(ConnectionResetError):
        body = io.BufferedReader(CutShort(PARTS_BEFORE_THE_CUT * PART + 10))
        store.upload("1/r/artifacts/cut.bin", body)
    assert events == ["part sent"] * parts_sent + ["abort"]
    assert all_keys(s3, bucket) == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_concurrent_uploads_share_the_senders_of_the_process(s3_endpoint, s3, bucket, monkeypatch):
    monkeypatch.setattr(artifact_store, "PART_SENDERS", 2)
    senders = set()
    store = store_on(
        s3_endpoint,
        bucket,
        **{"before-call.s3.UploadPart": lambda **_: senders.add(threading.current_thread().name)},
    )
    data = {f"1/r/artifacts/{n}.bin": os.urandom(2 * PART + n) for n in range(3)}
    with ThreadPoolExecutor(len(data)) as callers:
        stored = list(callers.map(lambda path: store.upload(path, io.BytesIO(data[path])), data))
    assert stored == [len(body) for body in data.values()]
    assert len(senders) <= 2  # three uploads at once, no thread of their own
    for path, body in data.items():
        assert s3.get_object(Bucket=bucket, Key=f"mlflow/root/{path}")["Body"].read() == body
