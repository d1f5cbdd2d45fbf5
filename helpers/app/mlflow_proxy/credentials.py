"""The AWS credentials requests are signed with: the default chain, or an assumed role.

Both are botocore's refreshable credentials, so an instance-profile or assumed-role credential is
fetched once per lifetime and refreshed before it expires, not once per request. The AWS clients
the proxy uses itself (S3 for artifacts, SageMaker's control plane for the UI) sign with the same
credentials: one role for everything the proxy does, except that read-only callers' MLflow
requests are signed with a read-only role of their own when SM_MLFLOW_READ_ONLY_ROLE_ARN names
one (docs/security-iam.md), assumed in the same way from the same source credentials.
"""

import functools
import logging
import threading
from typing import Callable, Optional

import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
    ReadOnlyCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from mlflow_proxy.errors import CredentialsUnavailable

logger = logging.getLogger(__name__)

ROLE_SESSION_NAME = "mlflow-proxy"
# In CloudTrail, the read-only role's sessions say whose requests they signed.
READ_ONLY_ROLE_SESSION_NAME = "mlflow-proxy-read-only"


class SigningCredentials:
    def __init__(
        self,
        session: botocore.session.Session,
        region: str,
        role_arn: Optional[str],
        role_session_name: str = ROLE_SESSION_NAME,
    ):
        self._session = session
        self._region = region
        self._role_arn = role_arn
        self._role_session_name = role_session_name
        self._lock = threading.Lock()
        self._credentials: Optional[Credentials] = None

    def warm_up(self) -> None:
        """Resolve now if possible; on failure the first request tries again (and logs why).

        Under gunicorn's preload_app this runs once, in the master: the workers it forks inherit
        the credentials instead of each assuming the role on its first request.
        """
        try:
            self.current()
        except CredentialsUnavailable:
            pass

    def current(self) -> ReadOnlyCredentials:
        """A consistent (key, secret, token) triple, refreshed by botocore when due."""
        try:
            return self._resolved().get_frozen_credentials()
        except (BotoCoreError, ClientError) as error:
            logger.warning("No AWS credentials to sign with: %s", error)
            raise CredentialsUnavailable(
                "The proxy has no AWS credentials to sign with right now; see its log."
            ) from error

    def create_client(self, service_name: str, config: Optional[Config] = None):
        """A botocore client signing with these credentials, refreshed as they are.

        Its endpoint follows botocore's rules (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_SAGEMAKER).
        """
        try:
            credentials = self._resolved()
        except (BotoCoreError, ClientError) as error:
            logger.warning("No AWS credentials for a %s client: %s", service_name, error)
            raise CredentialsUnavailable(
                "The proxy has no AWS credentials right now; see its log."
            ) from error
        # A session of its own: the shared one keeps resolving the default chain for the
        # Secrets Manager client, which reads the tokens as the instance, not as the role.
        session = botocore.session.Session()
        session.register_component(
            "credential_provider", CredentialResolver([_Given(credentials)])
        )
        return session.create_client(service_name, region_name=self._region, config=config)

    def _resolved(self) -> Credentials:
        # Resolved on first use rather than at start-up: the instance profile may not be
        # ready yet, and a request that finds none gets a 503 instead of a dead proxy.
        with self._lock:
            if self._credentials is None:
                source = self._session.get_credentials()
                if source is None:
                    raise NoCredentialsError()
                self._credentials = source if self._role_arn is None else self._assumed(source)
            return self._credentials

    def _assumed(self, source: Credentials) -> Credentials:
        fetcher = AssumeRoleCredentialFetcher(
            # The regional STS endpoint; AWS_ENDPOINT_URL_STS overrides it.
            client_creator=functools.partial(self._session.create_client, region_name=self._region),
            source_credentials=source,
            role_arn=self._role_arn,
            extra_args={"RoleSessionName": self._role_session_name},
        )
        return DeferredRefreshableCredentials(
            refresh_using=fetcher.fetch_credentials, method="assume-role"
        )


class ClientOnFirstUse:
    """A botocore client (or a thread pool) made on first use, not in create_app(): gunicorn
    forks its workers after create_app(), and a client's connection pool must not be shared
    across processes, nor can threads cross a fork."""

    def __init__(self, create: Callable[[], object]):
        self._create = create
        self._client = None
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._client is None:
                self._client = self._create()
            return self._client


class _Given(CredentialProvider):
    METHOD = "mlflow-proxy"

    def __init__(self, credentials: Credentials):
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials
