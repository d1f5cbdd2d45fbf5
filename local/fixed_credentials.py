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

# The local OIDC issuer's tokens (local/oidc_issuer.py): GitHub Actions' claims, and the rule that
# admits them (docs/oidc-callers.md).
OIDC_AUDIENCE = "mlflow-proxy-stand-in"
OIDC_CLAIMS = {
    "sub": "repo:demo-org/demo-repo:ref:refs/heads/main",
    "repository": "demo-org/demo-repo",
    "ref": "refs/heads/main",
    "workflow": "train",
}


def oidc_issuer(url: str) -> dict:
    return {
        "issuer": url,
        "audiences": [OIDC_AUDIENCE],
        "rules": [
            {
                "claims": {"repository": "demo-org/demo-repo", "ref": "refs/heads/main"},
                "access": "read-write",
                "name": "github:{repository}@{ref}",
            },
            {
                "claims": {"repository": "demo-org/*"},
                "access": "read-only",
                "name": "github:{repository}",
            },
        ],
    }
