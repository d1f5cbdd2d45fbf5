import pytest

from mlflow_proxy.config import SERVERLESS, TRACKING_SERVER, ConfigError, load_config
from proxy_support import APP_ARN, TOKENS_JSON, TRACKING_ARN

SECRET_ARN = "arn:aws:secretsmanager:us-west-2:123456789012:secret:proxy-tokens-AbCdEf"
BASE = {"SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN, "MLFLOW_PROXY_TOKENS": TOKENS_JSON}


def test_tracking_server_defaults():
    config = load_config(BASE)
    assert config.mode == TRACKING_SERVER
    assert config.region == "us-west-2"
    assert config.endpoint_url == "https://us-west-2.experiments.sagemaker.aws"
    assert config.role_arn is None
    assert config.read_only_role_arn is None
    assert not config.open_access
    assert config.tokens_refresh_seconds == 300
    assert config.max_body_bytes > 0
    assert config.connect_timeout_seconds > 0 and config.read_timeout_seconds > 0
    assert config.artifact_location is None  # artifact calls are forwarded, as before


def test_the_artifact_store_is_read_from_its_s3_uri():
    config = load_config({**BASE, "MLFLOW_PROXY_ARTIFACT_STORE_URI": "s3://team-bucket/mlflow/"})
    assert (config.artifact_location.bucket, config.artifact_location.prefix) == (
        "team-bucket",
        "mlflow",
    )


def test_mlflow_app_mode_and_endpoint_come_from_the_arn():
    config = load_config({**BASE, "SM_MLFLOW_RESOURCE_ARN": APP_ARN})
    assert config.mode == SERVERLESS
    assert config.region == "eu-west-1"
    assert config.endpoint_url == "https://mlflow.sagemaker.eu-west-1.app.aws"


def test_explicit_values_win():
    config = load_config(
        {
            **BASE,
            "SM_MLFLOW_AWS_REGION": "us-east-1",
            "SM_MLFLOW_ENDPOINT_URL": "https://vpce-0abc.experiments.sagemaker.aws/",
            "SM_MLFLOW_ROLE_ARN": "arn:aws:iam::123456789012:role/mlflow-proxy",
            "SM_MLFLOW_READ_ONLY_ROLE_ARN": "arn:aws:iam::123456789012:role/mlflow-reader",
            "MLFLOW_PROXY_MAX_BODY_BYTES": "2048",
            "MLFLOW_PROXY_READ_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert config.region == "us-east-1"
    assert config.endpoint_url == "https://vpce-0abc.experiments.sagemaker.aws"
    assert config.role_arn == "arn:aws:iam::123456789012:role/mlflow-proxy"
    assert config.read_only_role_arn == "arn:aws:iam::123456789012:role/mlflow-reader"
    assert config.max_body_bytes == 2048
    assert config.read_timeout_seconds == 2.5


def test_tokens_never_appear_in_the_configs_repr():
    assert "writer-token" not in repr(load_config(BASE))


def test_secret_arn_gives_the_region_to_read_it_from():
    environ = {"SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN, "MLFLOW_PROXY_TOKENS_SECRET_ARN": SECRET_ARN}
    assert load_config(environ).tokens_secret_region == "us-west-2"


def test_open_proxy_is_an_explicit_choice():
    assert load_config({"SM_MLFLOW_RESOURCE_ARN": TRACKING_ARN, "MLFLOW_PROXY_AUTH": "none"}).open_access


@pytest.mark.parametrize(
    "changes, variable",
    [
        ({"SM_MLFLOW_RESOURCE_ARN": None}, "SM_MLFLOW_RESOURCE_ARN"),
        ({"SM_MLFLOW_RESOURCE_ARN": "my-server"}, "SM_MLFLOW_RESOURCE_ARN"),
        (
            {"SM_MLFLOW_RESOURCE_ARN": "arn:aws:sagemaker:us-west-2:123456789012:domain/d-1"},
            "SM_MLFLOW_RESOURCE_ARN",
        ),
        (
            {"SM_MLFLOW_RESOURCE_ARN": "arn:aws:sagemaker:us-west-2:1234:mlflow-app/app-1"},
            "SM_MLFLOW_RESOURCE_ARN",
        ),
        ({"SM_MLFLOW_AWS_REGION": "Oregon"}, "SM_MLFLOW_AWS_REGION"),
        ({"SM_MLFLOW_ROLE_ARN": "mlflow-proxy"}, "SM_MLFLOW_ROLE_ARN"),
        (
            {"SM_MLFLOW_READ_ONLY_ROLE_ARN": "arn:aws:iam::1234:role/r"},
            "SM_MLFLOW_READ_ONLY_ROLE_ARN",
        ),
        ({"SM_MLFLOW_ENDPOINT_URL": "ftp://example.com"}, "SM_MLFLOW_ENDPOINT_URL"),
        ({"SM_MLFLOW_ENDPOINT_URL": "us-west-2.experiments"}, "SM_MLFLOW_ENDPOINT_URL"),
        ({"SM_MLFLOW_ENDPOINT_URL": "https://h/?a=1"}, "SM_MLFLOW_ENDPOINT_URL"),
        ({"MLFLOW_PROXY_TOKENS": None}, "MLFLOW_PROXY_AUTH=none"),
        ({"MLFLOW_PROXY_TOKENS": "[{]"}, "MLFLOW_PROXY_TOKENS"),
        ({"MLFLOW_PROXY_TOKENS": '{"name": "x", "token": "t"}'}, "MLFLOW_PROXY_TOKENS"),
        ({"MLFLOW_PROXY_TOKENS_SECRET_ARN": SECRET_ARN}, "MLFLOW_PROXY_TOKENS_SECRET_ARN"),
        (
            {"MLFLOW_PROXY_TOKENS": None, "MLFLOW_PROXY_TOKENS_SECRET_ARN": "tokens"},
            "MLFLOW_PROXY_TOKENS_SECRET_ARN",
        ),
        ({"MLFLOW_PROXY_AUTH": "none"}, "MLFLOW_PROXY_AUTH"),
        ({"MLFLOW_PROXY_AUTH": "off"}, "MLFLOW_PROXY_AUTH"),
        ({"MLFLOW_PROXY_TOKENS_REFRESH_SECONDS": "soon"}, "MLFLOW_PROXY_TOKENS_REFRESH_SECONDS"),
        ({"MLFLOW_PROXY_MAX_BODY_BYTES": "0"}, "MLFLOW_PROXY_MAX_BODY_BYTES"),
        ({"MLFLOW_PROXY_MAX_BODY_BYTES": "1.5"}, "MLFLOW_PROXY_MAX_BODY_BYTES"),
        ({"MLFLOW_PROXY_CONNECT_TIMEOUT_SECONDS": "-1"}, "MLFLOW_PROXY_CONNECT_TIMEOUT_SECONDS"),
        ({"MLFLOW_PROXY_READ_TIMEOUT_SECONDS": "inf"}, "MLFLOW_PROXY_READ_TIMEOUT_SECONDS"),
        ({"MLFLOW_PROXY_ARTIFACT_STORE_URI": "my-bucket/p"}, "MLFLOW_PROXY_ARTIFACT_STORE_URI"),
        ({"MLFLOW_PROXY_CONNECTIONS": "0"}, "MLFLOW_PROXY_CONNECTIONS"),
        ({"MLFLOW_PROXY_CONNECTIONS": "12.5"}, "MLFLOW_PROXY_CONNECTIONS"),
        ({"MLFLOW_PROXY_CONNECTIONS": "2000"}, "MLFLOW_PROXY_CONNECTIONS"),
        ({"MLFLOW_PROXY_HEALTH_PORT": "0"}, "MLFLOW_PROXY_HEALTH_PORT"),
        ({"MLFLOW_PROXY_HEALTH_PORT": "65536"}, "MLFLOW_PROXY_HEALTH_PORT"),
        ({"MLFLOW_PROXY_HEALTH_PORT": "-5001"}, "MLFLOW_PROXY_HEALTH_PORT"),
        ({"MLFLOW_PROXY_HEALTH_PORT": "health"}, "MLFLOW_PROXY_HEALTH_PORT"),
        ({"MLFLOW_PROXY_ARTIFACT_STORE_URI": "s3://b/../p"}, "MLFLOW_PROXY_ARTIFACT_STORE_URI"),
    ],
)
def test_a_bad_variable_is_named_in_the_error(changes, variable):
    environ = {**BASE, **changes}
    environ = {name: value for name, value in environ.items() if value is not None}
    with pytest.raises(ConfigError) as error:
        load_config(environ)
    assert variable in str(error.value)
    assert "writer-token" not in str(error.value)


def test_the_health_port_is_read_when_set():
    assert load_config(BASE).health_port is None
    assert load_config({**BASE, "MLFLOW_PROXY_HEALTH_PORT": " 5001 "}).health_port == 5001
