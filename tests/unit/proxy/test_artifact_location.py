import pytest

from mlflow_proxy.artifact_location import (
    ArtifactLocation,
    StoreUriError,
    parse_store_uri,
    safe_path,
)
from mlflow_proxy.errors import InvalidRequest


@pytest.mark.parametrize(
    "uri, bucket, prefix, s3_root",
    [
        ("s3://my-bucket/mlflow/artifacts/", "my-bucket", "mlflow/artifacts", "s3://my-bucket/mlflow/artifacts/"),
        ("s3://my-bucket/mlflow", "my-bucket", "mlflow", "s3://my-bucket/mlflow/"),
        ("s3://my-bucket", "my-bucket", "", "s3://my-bucket/"),
        (" s3://my.bucket.v2/p ", "my.bucket.v2", "p", "s3://my.bucket.v2/p/"),
    ],
)
def test_store_uri_gives_bucket_prefix_and_the_root_callers_never_see(uri, bucket, prefix, s3_root):
    location = parse_store_uri(uri)
    assert (location.bucket, location.prefix, location.s3_root) == (bucket, prefix, s3_root)


@pytest.mark.parametrize(
    "uri",
    ["", "my-bucket/prefix", "https://my-bucket.s3.amazonaws.com/p", "s3://", "s3://UPPER/p",
     "s3://b/p", "s3://bucket/a//b", "s3://bucket/a/../b", "s3://bucket/./b"],
)
def test_a_bad_store_uri_names_the_variable(uri):
    with pytest.raises(StoreUriError, match="MLFLOW_PROXY_ARTIFACT_STORE_URI"):
        parse_store_uri(uri)


def test_keys_are_under_the_prefix_and_map_back():
    location = ArtifactLocation("bucket", "root/sub")
    assert location.key("1/abc/artifacts/model.pkl") == "root/sub/1/abc/artifacts/model.pkl"
    assert location.key("") == "root/sub"
    assert location.relative_path("root/sub/1/x") == "1/x"
    assert ArtifactLocation("bucket", "").key("1/x") == "1/x"
    with pytest.raises(ValueError):
        location.relative_path("root/subway/1/x")


@pytest.mark.parametrize(
    "path",
    ["1/abc/artifacts/model/MLmodel", "a b/c+d.txt", "x/.hidden", "x/..y", "über/ß.txt",
     "runs/a%b.txt"],
)
def test_ordinary_paths_are_kept_as_they_are(path):
    assert safe_path(path) == path


@pytest.mark.parametrize(
    "path, reason",
    [
        ("../other-prefix/x", "'.' or '..'"),
        ("1/../../x", "'.' or '..'"),
        ("1/./x", "'.' or '..'"),
        ("..", "'.' or '..'"),
        ("/etc/passwd", "absolute"),
        ("C:/Windows/x", "absolute"),
        ("1\\..\\x", "backslash"),
        ("1//x", "empty segment"),
        ("1/x/", "empty segment"),
        ("", "empty"),
        ("1/x\x00.txt", "control character"),
        ("%2e%2e/x", "'.' or '..'"),
        ("1/%2E%2E/%2e%2e/x", "'.' or '..'"),
        ("%252e%252e/x", "'.' or '..'"),
        ("%2fetc/passwd", "absolute"),
        ("1%5c..%5cx", "backslash"),
        ("1%2f%2fx", "empty segment"),
        ("%25252e%25252e/x", "too many times"),
    ],
)
def test_paths_that_could_leave_the_store_are_refused_as_mlflow_does(path, reason):
    with pytest.raises(InvalidRequest, match="Invalid artifact path") as refused:
        safe_path(path)
    assert reason in refused.value.message
    assert (refused.value.status, refused.value.error_code) == (400, "INVALID_PARAMETER_VALUE")


def test_the_root_is_only_allowed_where_listing_asks_for_it():
    assert safe_path("", allow_root=True) == ""
    with pytest.raises(InvalidRequest):
        safe_path("")
