"""GET /ui: send an authenticated caller to a fresh presigned URL of the SageMaker MLflow UI.

SageMaker's MLflow UI is opened through a presigned URL from the control plane
(CreatePresignedMlflowTrackingServerUrl or CreatePresignedMlflowAppUrl), which the proxy asks
for with its own role. A browser gets a Basic-auth prompt from the 401 (any user name, the token
as password). The URL is single-use and short-lived, so it is made per request and never cached.
"""

import logging
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError
from flask import Flask, redirect

from mlflow_proxy.config import SERVERLESS, Config
from mlflow_proxy.credentials import ClientOnFirstUse
from mlflow_proxy.errors import AwsRefused, PermissionDenied, UpstreamUnreachable

logger = logging.getLogger(__name__)

# The redirect is followed at once: the URL only needs to live long enough to be opened.
URL_LIFETIME_SECONDS = 60


class PresignedUi:
    def __init__(self, config: Config, create_client: Callable[[], object]):
        self._config = config
        self._client = ClientOnFirstUse(create_client)

    @property
    def _sagemaker(self):
        return self._client.get()

    def url(self) -> str:
        try:
            if self._config.mode == SERVERLESS:
                response = self._sagemaker.create_presigned_mlflow_app_url(
                    Arn=self._config.resource_arn, ExpiresInSeconds=URL_LIFETIME_SECONDS
                )
            else:
                response = self._sagemaker.create_presigned_mlflow_tracking_server_url(
                    TrackingServerName=self._config.resource_arn.rsplit("/", 1)[1],
                    ExpiresInSeconds=URL_LIFETIME_SECONDS,
                )
        except ClientError as error:
            logger.error("SageMaker refused a presigned MLflow UI URL: %s", error)
            code = error.response.get("Error", {}).get("Code", "")
            raise AwsRefused(
                f"SageMaker refused to open the MLflow UI ({code}); see the proxy's log."
            ) from error
        except BotoCoreError as error:
            raise UpstreamUnreachable(f"Cannot reach the SageMaker API: {error}") from error
        return response["AuthorizedUrl"]


def register_ui_route(app: Flask, ui: PresignedUi, authenticate: Callable[[], object]) -> None:
    """`authenticate()` returns the caller (with .name, .read_only) or raises Unauthenticated."""

    # The MLflow client prints "View run at <tracking URI>/#/experiments/..." links: send the
    # browser on to the UI. The fragment never reaches us; browsers keep it across redirects.
    @app.get("/", provide_automatic_options=False)
    def root():
        return redirect("/ui", code=302)

    # No automatic OPTIONS: Flask would answer it before any token is checked.
    @app.get("/ui", provide_automatic_options=False)
    def open_ui():
        caller = authenticate()
        if caller.read_only:
            # The UI signs in with the proxy's role, which may write: a read-only token would
            # become a read-write session.
            raise PermissionDenied(
                f"Caller {caller.name!r} has a read-only token; the MLflow UI can change data, "
                "so it opens for read-write tokens only."
            )
        response = redirect(ui.url(), code=302)
        # The Location header is a credential for a few seconds: keep it out of caches and
        # out of the Referer the MLflow UI would send onwards.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
