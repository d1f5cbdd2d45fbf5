"""Every fixed secret of the local stand-in, in one place. None of them is valid anywhere else."""

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"

# The long-term key the proxy signs with when no role is configured (AKIA = long-term key).
ACCESS_KEY_ID = "AKIASTANDIN000000001"
SECRET_ACCESS_KEY = "stand-in/secret/key/for/loopback/use/only"

# The roles the proxy may assume through the emulated STS: the one it signs with, and the
# read-only one it signs read-only callers' requests with (emulated_sts.POLICIES).
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/mlflow-proxy-stand-in"
READ_ONLY_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/mlflow-proxy-stand-in-read-only"

# Signs the emulated STS's session tokens, so temporary credentials are verified without state.
SESSION_TOKEN_KEY = b"stand-in session token key"

TRACKING_SERVER_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:mlflow-tracking-server/stand-in"
MLFLOW_APP_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:mlflow-app/app-STANDIN00001"

# Caller tokens the local proxy accepts (CONTRIBUTING.md, token format).
DEMO_TOKEN = "demo-token-read-write"
READ_ONLY_TOKEN = "demo-token-read-only"
PROXY_TOKENS = [
    {"name": "demo", "token": DEMO_TOKEN, "access": "read-write"},
    {"name": "dashboards", "token": READ_ONLY_TOKEN, "access": "read-only"},
]
