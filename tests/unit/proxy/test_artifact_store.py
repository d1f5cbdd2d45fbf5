"""The S3 side of the artifact service, against a real S3 API (moto_server on loopback)."""

import hashlib
import io
import os
from urllib.parse import parse_qs, urlsplit

import botocore.credentials
import pytest
import requests

from mlflow_proxy import artifact_store
from mlflow_proxy.artifact_location import ArtifactLocation
from mlflow_proxy.artifact_store import S3_CLIENT_CONFIG, ArtifactStore
from mlflow_proxy.errors import AwsRefused, BodyTooLarge, InvalidRequest, ResourceNotFound
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
