"""`sam package` of the built template against a local S3: everything uploaded, every reference
rewritten, in the root template and in each nested template it uploads."""

import io
import zipfile
from dataclasses import dataclass
from urllib.parse import urlparse

import boto3
import pytest
import yaml

from packaging_support import SAM, TEMPLATE, artifacts, load_cfn, local_templates, run, tool_env

pytestmark = pytest.mark.slow

BUCKET = "packaging-test-artifacts"
REGION = "us-east-1"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
NESTED_TYPES = ("AWS::CloudFormation::Stack", "AWS::Serverless::Application")


@dataclass
class Packaged:
    endpoint: str
    templates: dict  # where the template lives (the output file, or its S3 key) -> template
    keys: set  # every key in the bucket
    s3: object

    def key_of(self, reference):
        """The bucket key a packaged reference names; fails if it names anything but our bucket."""
        if isinstance(reference, dict):  # AWS::Lambda::* {S3Bucket, S3Key}
            assert reference.get("S3Bucket") == BUCKET, reference
            return reference["S3Key"]
        if reference.startswith("s3://"):
            url = urlparse(reference)
            assert url.netloc == BUCKET, reference
            return url.path.lstrip("/")
        prefix = f"{self.endpoint}/{BUCKET}/"
        assert reference.startswith(prefix), f"{reference} is not in the local S3 bucket {prefix}"
        return reference.removeprefix(prefix)


@pytest.fixture(scope="module")
def packaged(sam_build, sam_config, local_s3, tmp_path_factory):
    s3 = boto3.client(
        "s3",
        endpoint_url=local_s3,
        region_name=REGION,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket=BUCKET)
    output = tmp_path_factory.mktemp("sam-package") / "packaged.yaml"
    run(
        [
            str(SAM), "package", "--config-file", str(sam_config),
            "--template-file", str(sam_build / "template.yaml"), "--output-template-file", str(output),
            "--s3-bucket", BUCKET, "--s3-prefix", "stack", "--region", REGION,
        ],
        env=tool_env(AWS_ENDPOINT_URL_S3=local_s3, AWS_DEFAULT_REGION=REGION, **DUMMY_CREDENTIALS),
    )
    keys = {obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for obj in page.get("Contents", [])}
    result = Packaged(local_s3, {str(output): load_cfn(output.read_text())}, keys, s3)
    # Follow the nested templates into the bucket, where CloudFormation will read them.
    pending = [result.templates[str(output)]]
    while pending:
        for _, resource_type, reference in artifacts(pending.pop()):
            if resource_type in NESTED_TYPES:
                key = result.key_of(reference)
                body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
                result.templates[key] = load_cfn(body)
                pending.append(result.templates[key])
    return result


def artifact_ids(templates):
    return sorted((resource_type, logical_id) for template in templates for logical_id, resource_type, _ in artifacts(template))


def test_every_artifact_of_every_template_is_packaged(packaged):
    source = local_templates(TEMPLATE)
    assert artifact_ids(packaged.templates.values()) == artifact_ids(source.values())


def test_every_reference_points_at_an_uploaded_object(packaged):
    for where, template in packaged.templates.items():
        for logical_id, _, reference in artifacts(template):
            assert packaged.key_of(reference) in packaged.keys, (where, logical_id, reference)


def test_every_nested_template_is_uploaded(packaged):
    source_nested = [path for path in local_templates(TEMPLATE) if path != TEMPLATE]
    uploaded_nested = [where for where in packaged.templates if where in packaged.keys]
    assert len(uploaded_nested) == len(source_nested)


def test_no_local_path_is_left_in_any_packaged_template(packaged, sam_build):
    for where, template in packaged.templates.items():
        text = yaml.safe_dump(template)
        assert str(sam_build) not in text, where
        assert str(TEMPLATE.parent) not in text, where


def test_the_proxy_bundle_upload_holds_the_bundle(packaged):
    references = [reference for template in packaged.templates.values()
                  for logical_id, _, reference in artifacts(template) if logical_id == "ProxyBundle"]
    assert len(references) == 1, references
    body = packaged.s3.get_object(Bucket=BUCKET, Key=packaged.key_of(references[0]))["Body"].read()
    names = set(zipfile.ZipFile(io.BytesIO(body)).namelist())
    for expected in ("bootstrap.sh", "mlflow-proxy.service", "app/gunicorn.conf.py",
                     "app/mlflow_proxy/__init__.py", "vendor/flask/__init__.py", "vendor/gunicorn/__init__.py"):
        assert expected in names, expected
    assert not [name for name in names if "__pycache__" in name]
