"""`python -m local.demo --mode tracking|serverless`: the proxy against the local stand-in.

Starts mlflow server, the SageMaker emulator (with STS) and the proxy on loopback, runs a short
MLflow client workload through the proxy with a token, prints how to point your own client at
it, and runs until Ctrl-C. The logs stay in local/.run/<mode>/ after it stopped.
"""

import argparse
import os
import signal
import sys
import time
import traceback
import uuid

from local.stand_in import REPO_ROOT, StandIn

LOG_DIR = REPO_ROOT / "local" / ".run"
LOGS_HEADING = "Logs (kept after the demo stops):"
LOG_NAMES = {
    "proxy": "proxy (access log)",
    "emulator": "SageMaker stand-in",
    "mlflow": "mlflow server",
    "s3": "S3 (moto)",
}


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m local.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--mode",
        choices=["tracking", "serverless"],
        default="tracking",
        help="which SageMaker MLflow to emulate (default: tracking)",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="loopback port for the proxy (default: a free one)"
    )
    parser.add_argument(
        "--exit-after-workload",
        action="store_true",
        help="stop after the workload; the exit code says whether it passed",
    )
    return parser.parse_args(argv)


def stop_once(signum, frame):
    """The first Ctrl-C or SIGTERM stops the demo; later ones are ignored, because one landing
    while the stand-in stops would cut that short and leave its servers running."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, stop_once)
    signal.signal(signal.SIGTERM, stop_once)
    print(
        f"Starting a local S3, mlflow server, the SageMaker stand-in ({args.mode}) and the "
        "proxy...",
        flush=True,
    )
    try:
        with StandIn(
            args.mode, assume_role=True, proxy_port=args.port, log_dir=LOG_DIR / args.mode
        ) as stand_in:
            print(f"  proxy            {stand_in.proxy_url}")
            print(f"  stand-in         {stand_in.emulator_url}  ({stand_in.resource_arn})")
            print(f"  mlflow server    {stand_in.mlflow_url}")
            print(f"  S3 (moto)        {stand_in.s3_url}")
            print(f"  read-write token {stand_in.token}")
            print(f"  read-only token  {stand_in.read_only_token}  (reads only: a write gets 403)")
            print(f"  OIDC issuer      {stand_in.issuer.url}  (a JWT it signs is a token too)")
            print(LOGS_HEADING)
            for part in stand_in.PARTS:
                print(f"  {LOG_NAMES[part]:<21}{stand_in.log_path(part).relative_to(REPO_ROOT)}")
            sys.stdout.flush()

            # The MLflow client reads these at each request; it is what a user sets, too.
            os.environ["MLFLOW_TRACKING_URI"] = stand_in.proxy_url
            os.environ["MLFLOW_TRACKING_TOKEN"] = stand_in.token
            # A broken chain should fail the demo in seconds, not after minutes of retries.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
            passed = run_workload_and_report(stand_in) and show_oidc_caller(stand_in)
            if args.exit_after_workload or not passed:
                return 0 if passed else 1

            print("\nTo use the running proxy from your own MLflow client:")
            print(f"  export MLFLOW_TRACKING_URI={stand_in.proxy_url}")
            print(f"  export MLFLOW_TRACKING_TOKEN={stand_in.token}")
            print(f"The MLflow UI, through the proxy: {stand_in.proxy_url}/ui")
            print("  (a browser asks for a user name and password: any name, the token)")
            print(f"Artifacts are kept in {stand_in.artifact_store_uri} on the local S3.")
            print("\nRunning; press Ctrl-C to stop.", flush=True)
            # Not signal.pause(): a signal that lands just before it starts waiting (a quick
            # Ctrl-C) would leave it waiting for another one. A sleep ends on its own.
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        print("\nStopped.")
    return 0


def run_workload_and_report(stand_in: StandIn) -> bool:
    # Imported here: mlflow takes a few seconds to import, time the processes use to start.
    from mlflow import MlflowClient

    from local.workload import run_workload

    print("\nWorkload through the proxy (token-authenticated, SigV4-signed by the proxy):")
    try:
        run_workload(
            MlflowClient(tracking_uri=stand_in.proxy_url),
            say=lambda line: print("  " + line, flush=True),
        )
    except Exception:
        print("\nThe workload FAILED:", file=sys.stderr)
        traceback.print_exc()
        for part in stand_in.PARTS:
            print(
                f"\n--- last lines of the {part} log ---\n{stand_in.log_tail(part)}",
                file=sys.stderr,
            )
        return False
    by_role = stand_in.stats()["assume_role_calls_by_role"]
    calls = ", ".join(f"{role.rsplit('/', 1)[-1]} {n}" for role, n in sorted(by_role.items()))
    print(f"  STS AssumeRole calls so far, per role: {calls}")
    return True


def show_oidc_caller(stand_in: StandIn) -> bool:
    """A CI job's way in: its platform's OIDC token instead of a stored one."""
    from mlflow import MlflowClient

    token = stand_in.oidc_token()
    print(
        "\nA keyless caller: an OIDC token from the local issuer (GitHub Actions' claims for "
        "demo-org/demo-repo on refs/heads/main) as MLFLOW_TRACKING_TOKEN, no stored secret:"
    )
    static_token = os.environ["MLFLOW_TRACKING_TOKEN"]
    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    try:
        client = MlflowClient(tracking_uri=stand_in.proxy_url)
        experiment_id = client.create_experiment(f"keyless CI {uuid.uuid4().hex[:8]}")
        run = client.create_run(experiment_id, run_name="from CI, no stored token")
        client.log_metric(run.info.run_id, "accuracy", 0.9)
        client.set_terminated(run.info.run_id)
    except Exception:
        print("\nThe OIDC caller FAILED:", file=sys.stderr)
        traceback.print_exc()
        proxy_log = stand_in.log_tail("proxy")
        print(f"\n--- last lines of the proxy log ---\n{proxy_log}", file=sys.stderr)
        return False
    finally:
        os.environ["MLFLOW_TRACKING_TOKEN"] = static_token
    print(f"  logged run {run.info.run_id}; the proxy's access log names the caller by its claims:")
    lines = stand_in.log_path("proxy").read_text(errors="replace").splitlines()
    print("  " + next(line for line in lines if "github:demo-org/" in line).strip())
    print("  (the rules the proxy trusts it by: docs/oidc-callers.md)", flush=True)
    return True


if __name__ == "__main__":
    sys.exit(main())
