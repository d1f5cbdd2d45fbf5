"""The smoke test's AWS part (describe-stacks, get-secret-value) against moto: a stack with the
root template's outputs and a token secret of the shape the stack generates."""

import json

import boto3
import pytest
from cfnlint.decode import decode
from moto import mock_aws

from local.stand_in_stack import create_stack, generated_secret_string
from local.stand_in import REPO_ROOT
from smoke.__main__ import main
from smoke.stack import SECRET_OUTPUT, URL_OUTPUT, StackError, target_from_stack, tokens_from_secret

REGION = "eu-west-1"
READ_ONLY = {"name": "dashboards", "token": "r" * 20, "access": "read-only"}


@pytest.fixture
def aws(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


def test_the_outputs_it_reads_are_the_root_templates():
    template, problems = decode(str(REPO_ROOT / "template.yaml"))
    assert not problems
    assert {URL_OUTPUT, SECRET_OUTPUT} <= set(template["Outputs"])


def test_reads_the_url_and_the_generated_token(aws):
    secret = generated_secret_string()
    create_stack(aws, "mlflow-proxy-tracking", "http://proxy.example/", secret)
    target = target_from_stack("mlflow-proxy-tracking", REGION)
    assert target.url == "http://proxy.example"
    assert target.token == json.loads(secret)["token"]
    assert target.read_only_token is None
    assert target.source == f"stack mlflow-proxy-tracking in {REGION}"
    assert target.token not in repr(target)


def test_finds_a_read_only_token_in_a_list(aws):
    admin = json.loads(generated_secret_string())
    create_stack(aws, "s", "http://proxy.example", json.dumps([READ_ONLY, admin]))
    target = target_from_stack("s", REGION)
    assert (target.token, target.read_only_token) == (admin["token"], READ_ONLY["token"])


def test_a_missing_stack_is_named(aws):
    with pytest.raises(StackError, match=f"stack nowhere in {REGION}.*does not exist"):
        target_from_stack("nowhere", REGION)


def test_a_stack_in_another_region_is_not_found(aws):
    create_stack(aws, "s", "http://proxy.example", generated_secret_string())
    with pytest.raises(StackError, match="does not exist"):
        target_from_stack("s", "us-east-1")


def test_a_stack_without_the_outputs_says_which(aws):
    aws.client("cloudformation").create_stack(
        StackName="bare",
        TemplateBody=json.dumps({"Resources": {"Group": {"Type": "AWS::Logs::LogGroup"}}}),
    )
    with pytest.raises(StackError, match="has no output ProxyUrl, TokenSecretArn"):
        target_from_stack("bare", REGION)


def test_no_region_is_a_clear_error(aws):
    with pytest.raises(StackError, match="no AWS region"):
        target_from_stack("s")


@pytest.mark.parametrize(
    "document, message",
    [
        ("not json", "not JSON"),
        (json.dumps(READ_ONLY), "no read-write token"),
        (json.dumps([{"name": "x"}]), "no read-write token"),
    ],
)
def test_a_secret_without_a_read_write_token_is_refused_without_quoting_it(document, message):
    with pytest.raises(StackError, match=message) as raised:
        tokens_from_secret(document)
    assert READ_ONLY["token"] not in str(raised.value)


def test_hashed_tokens_and_issuers_are_passed_over():
    document = [
        {"issuer": "https://token.actions.githubusercontent.com", "audiences": ["x"], "rules": []},
        {"name": "ci", "token": "sha256:" + "0" * 64},
        {"name": "admin", "token": "t" * 16},
    ]
    assert tokens_from_secret(json.dumps(document)) == ("t" * 16, None)
    with pytest.raises(StackError, match="no read-write token in clear"):
        tokens_from_secret(json.dumps(document[:2]))


def test_access_defaults_to_read_write():
    assert tokens_from_secret(json.dumps({"name": "ci", "token": "t" * 16})) == ("t" * 16, None)


def test_main_exits_2_naming_the_stack_it_cannot_read(aws, capsys):
    assert main(["--stack", "nowhere", "--region", REGION]) == 2
    assert "nowhere" in capsys.readouterr().err
