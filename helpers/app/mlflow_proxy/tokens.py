"""`python -m mlflow_proxy.tokens add --name ci [--read-only] [--expires 2027-01-31T00:00:00Z]
[--secret-arn ARN]`: make a caller token, print it once, keep only its SHA-256.

With --secret-arn the entry is added to the caller document in that Secrets Manager secret (the
proxy picks it up within MLFLOW_PROXY_TOKENS_REFRESH_SECONDS); without, the entry is printed for
MLFLOW_PROXY_TOKENS. Either way the document holds `"token": "sha256:<hex>"`, so whoever reads
it cannot present the token. stdout: the token, then (without --secret-arn) the entry.
"""

import argparse
import hashlib
import json
import secrets
import sys

import botocore.session

from mlflow_proxy.callers import READ_ONLY, READ_WRITE, TokenFormatError, parse_tokens


def new_entry(name: str, read_only: bool, expires=None) -> tuple[str, dict]:
    """(the token, its entry for the caller document)."""
    token = secrets.token_urlsafe(32)
    entry = {
        "name": name,
        "token": "sha256:" + hashlib.sha256(token.encode()).hexdigest(),
        "access": READ_ONLY if read_only else READ_WRITE,
    }
    if expires:
        entry["expires"] = expires
    return token, entry


def add_to_secret(client, secret_arn: str, entry: dict) -> None:
    """Append the entry to the secret's document; the result must parse, or nothing is written."""
    document = json.loads(client.get_secret_value(SecretId=secret_arn)["SecretString"])
    entries = document if isinstance(document, list) else [document]
    document = json.dumps(entries + [entry], indent=1)
    parse_tokens(document)  # a duplicate name or a bad expiry stops here, before the write
    # Secrets Manager has no compare-and-swap: a concurrent edit between these calls is lost.
    client.put_secret_value(SecretId=secret_arn, SecretString=document)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlflow_proxy.tokens", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="make a token and add its hash to the caller document")
    add.add_argument("--name", required=True, help="the caller's name, as the access log shows it")
    add.add_argument("--read-only", action="store_true", help="read endpoints only")
    add.add_argument("--expires", help="ISO 8601 time with a zone, e.g. 2027-01-31T00:00:00Z")
    add.add_argument("--secret-arn", help="the stack's TokenSecretArn; omitted: print the entry")
    args = parser.parse_args(argv)

    token, entry = new_entry(args.name, args.read_only, args.expires)
    try:
        parse_tokens(json.dumps(entry))
        if args.secret_arn:
            region = args.secret_arn.split(":")[3] if args.secret_arn.count(":") >= 6 else None
            session = botocore.session.get_session()
            client = session.create_client("secretsmanager", region_name=region)
            add_to_secret(client, args.secret_arn, entry)
    except TokenFormatError as error:
        print(f"Not added: {error}", file=sys.stderr)
        return 2
    print(token)
    if args.secret_arn:
        print(f"Added {args.name!r} to {args.secret_arn}.", file=sys.stderr)
    else:
        print(json.dumps(entry))
        print("Add the entry (second line) to MLFLOW_PROXY_TOKENS.", file=sys.stderr)
    print("The token (first line) is shown only now; the proxy keeps its hash.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
