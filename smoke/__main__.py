"""`python -m smoke --stack NAME [--region R]` or `--url URL --token T [--read-only-token T]`.

Proves a deployed proxy works: reads the stack's ProxyUrl and token secret with your AWS
credentials, then, with the token only (AWS credentials are dropped from the process first),
checks /health, the 401s, the short MLflow client workload of local/workload.py, a trace, the
read-only token and /ui, cleans up what it created and prints a table. Exit code 0 = no check
failed; 1 = a check failed; 2 = the stack or its secret could not be read.
"""

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

from smoke import checks
from smoke.stack import StackError, Target, target_from_stack

# Starts the name of everything the smoke test creates, so that what a failed clean-up leaves
# behind is recognisable.
LABEL = "mlflow-proxy smoke test"

PASS, FAIL, SKIPPED = "pass", "FAIL", "skipped"


@dataclass
class Row:
    check: str
    result: str
    seconds: Optional[float]
    detail: str


class Report:
    def __init__(self, out=sys.stdout):
        self.rows: list[Row] = []
        self.out = out

    def run(self, check: str, step: Callable[[], str]) -> bool:
        started = time.monotonic()
        try:
            detail, result = step(), PASS
        except Exception as error:
            detail, result = f"{type(error).__name__}: {error}", FAIL
        row = Row(check, result, time.monotonic() - started, " ".join(detail.split()))
        self.rows.append(row)
        print(f"  {row.result:9} {row.check}", file=self.out, flush=True)
        return result == PASS

    def skip(self, check: str, why: str) -> None:
        self.rows.append(Row(check, SKIPPED, None, why))

    @property
    def failed(self) -> bool:
        return any(row.result == FAIL for row in self.rows)

    def table(self) -> str:
        width = max(len(row.check) for row in self.rows)
        lines = [f"{'check':{width}}  {'result':9}  {'seconds':>7}  detail"]
        for row in self.rows:
            seconds = "" if row.seconds is None else f"{row.seconds:.2f}"
            lines.append(f"{row.check:{width}}  {row.result:9}  {seconds:>7}  {row.detail[:160]}")
        counts = {r: sum(row.result == r for row in self.rows) for r in (PASS, FAIL, SKIPPED)}
        lines.append(", ".join(f"{n} {r.lower()}" for r, n in counts.items() if n) or "nothing ran")
        return "\n".join(lines)


def drop_aws_credentials() -> None:
    """The rest runs as a caller with only a token would: no AWS credentials of any kind, so a
    client that tried to reach S3 itself would fail here as it does for such a caller."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )


def step_name(step: Callable) -> str:
    return step.__name__.replace("_", " ")


def run_smoke_test(target: Target, out=sys.stdout) -> Report:
    # The MLflow client reads these at each request, as it does for a user.
    os.environ["MLFLOW_TRACKING_URI"] = target.url
    os.environ["MLFLOW_TRACKING_TOKEN"] = target.token
    # A broken deployment should fail in seconds, not after minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    # Imported here: mlflow takes seconds to import, and --help should not wait for it.
    from mlflow import MlflowClient

    from local.workload import Workload

    report = Report(out)
    report.run("/health answers", lambda: checks.health(target))
    report.run("no token gets 401", lambda: checks.no_token_is_refused(target))
    report.run("a wrong token gets 401", lambda: checks.wrong_token_is_refused(target))

    workload = Workload(MlflowClient(tracking_uri=target.url), label=LABEL)
    steps = [*workload.steps(), workload.log_trace]
    for position, step in enumerate(steps):
        if not report.run(step_name(step), step):
            for later in steps[position + 1 :]:
                report.skip(step_name(later), f"needs {step_name(step)}")
            break

    if target.read_only_token:
        report.run(
            "read-only token cannot write",
            lambda: checks.read_only_token_cannot_write(target, LABEL),
        )
    else:
        report.skip("read-only token cannot write", "no read-only token (none in the secret, or none given)")
    report.run("/ui redirects to a presigned URL", lambda: checks.ui_redirects_to_a_presigned_url(target))
    report.run("clean up", workload.clean_up)
    return report


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m smoke", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="the deployed stack's name (reads its outputs and secret)")
    where.add_argument("--url", help="a proxy's URL, e.g. make demo's (then give --token)")
    parser.add_argument("--region", help="with --stack: the stack's region (default: your AWS config's)")
    parser.add_argument(
        "--token",
        default=os.environ.get("MLFLOW_TRACKING_TOKEN"),
        help="with --url: a read-write token (default: $MLFLOW_TRACKING_TOKEN)",
    )
    parser.add_argument("--read-only-token", help="with --url: a read-only token, if there is one")
    args = parser.parse_args(argv)
    if args.url and not args.token:
        parser.error("--url needs --token (or MLFLOW_TRACKING_TOKEN)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.stack:
        try:
            target = target_from_stack(args.stack, args.region)
        except StackError as error:
            print(f"smoke: {error}", file=sys.stderr)
            return 2
    else:
        target = Target(args.url.rstrip("/"), args.token, args.read_only_token, "URL given")
    drop_aws_credentials()
    print(f"Smoke test of {target.url} ({target.source}), with a token only:", flush=True)
    report = run_smoke_test(target)
    print("\n" + report.table())
    print("PASSED" if not report.failed else "FAILED")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
