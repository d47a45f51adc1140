"""Credentials for the Azure SDK clients and storage options for deltalake, from one config.

Both sides sign in the same way (see `ingest_core.azure.settings`): a shared
key, a SAS, or Microsoft Entra identity through `DefaultAzureCredential`.
deltalake cannot call a credential object, so under identity it gets a bearer
token; `delta_storage_options` caches that token and fetches a new one when
fewer than `TOKEN_REFRESH_MARGIN_S` seconds remain. Calling it again is cheap,
so a long-lived ingestor asks before each commit and reloads its table when
the options changed. Secrets never appear in errors or logs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ingest_core.azure.settings import (
    AZURITE_BLOB_ENDPOINT,
    AccountSettings,
    account_settings,
)
from ingest_core.azure.urls import parse_blob_url
from ingest_core.config import StorageConfig
from ingest_core.errors import ConfigurationError

if TYPE_CHECKING:
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.filedatalake import DataLakeServiceClient
    from azure.storage.queue import QueueServiceClient

STORAGE_SCOPE = "https://storage.azure.com/.default"
TOKEN_REFRESH_MARGIN_S = 600.0
"""Fetch a new bearer token when the cached one has less than this left (tokens live >= 1 h)."""


@lru_cache(maxsize=1)
def _default_credential() -> Any:
    """One DefaultAzureCredential per process (it caches tokens and probes sources once)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def sdk_credential(settings: AccountSettings) -> Any:
    """The credential object the Azure SDK clients take for this account."""
    if settings.account_key:
        from azure.core.credentials import AzureNamedKeyCredential

        return AzureNamedKeyCredential(settings.account_name, settings.account_key)
    if settings.sas_token:
        from azure.core.credentials import AzureSasCredential

        return AzureSasCredential(settings.sas_token)
    return _default_credential()


def blob_service(settings: AccountSettings, **options: Any) -> BlobServiceClient:
    """A Blob service client (listing, properties, writes); `options` go to the client."""
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient(
        settings.blob_endpoint, credential=sdk_credential(settings),
        use_env_settings=settings.proxies, **options,
    )


def datalake_service(settings: AccountSettings, **options: Any) -> DataLakeServiceClient:
    """A Data Lake client for file reads (it talks to the Blob endpoint for downloads)."""
    from azure.storage.filedatalake import DataLakeServiceClient

    return DataLakeServiceClient(
        settings.dfs_endpoint, credential=sdk_credential(settings),
        use_env_settings=settings.proxies, **options,
    )


def table_service(settings: AccountSettings) -> TableServiceClient:
    """A Table service client for the ledger."""
    from azure.data.tables import TableServiceClient

    return TableServiceClient(
        settings.table_endpoint, credential=sdk_credential(settings),
        use_env_settings=settings.proxies,
    )


def queue_service(settings: AccountSettings) -> QueueServiceClient:
    """A Queue service client (the blob trigger's poison queue)."""
    from azure.storage.queue import QueueServiceClient

    return QueueServiceClient(
        settings.queue_url, credential=sdk_credential(settings),
        use_env_settings=settings.proxies,
    )


class BearerToken:
    """A storage bearer token shared by every caller in the process, renewed before expiry.

    Args:
        credential: returns the TokenCredential to ask (default: the process's
            DefaultAzureCredential).
    """

    def __init__(self, credential: Callable[[], Any] = _default_credential) -> None:
        self._credential = credential
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_on = 0.0

    def get(self) -> str:
        """The cached token, or a new one when it has less than the margin left."""
        with self._lock:
            if self._token is None or self._expires_on - time.time() < TOKEN_REFRESH_MARGIN_S:
                access = self._credential().get_token(STORAGE_SCOPE)
                self._token, self._expires_on = access.token, float(access.expires_on)
            return self._token


_bearer = BearerToken()


@lru_cache(maxsize=32)
def _static_options(table_uri: str, storage: StorageConfig) -> tuple[tuple[str, str], ...]:
    """The options that do not expire: account, endpoint and (for key or SAS) the secret."""
    location = parse_blob_url(table_uri)
    if location.path_style:
        raise ConfigurationError(
            f"table {table_uri}: deltalake does not read path-style URLs; write the table as "
            "abfs://container/path (on Azurite too) or abfss://container@account.dfs.core."
            "windows.net/path"
        )
    settings = account_settings(storage, location.account)
    options = {"azure_storage_account_name": settings.account_name}
    if settings.emulator and settings.blob_endpoint == AZURITE_BLOB_ENDPOINT:
        options["azure_storage_use_emulator"] = "true"
    elif not settings.default_endpoints:
        options["azure_storage_endpoint"] = settings.blob_endpoint
        if settings.blob_endpoint.startswith("http://"):
            options["allow_http"] = "true"
    if settings.account_key:
        options["azure_storage_account_key"] = settings.account_key
    elif settings.sas_token:
        options["azure_storage_sas_key"] = settings.sas_token
    return tuple(sorted(options.items()))


def delta_storage_options(table_uri: str, storage: StorageConfig) -> dict[str, str]:
    """deltalake storage options for a table at an abfs(s):// URI.

    Cheap to call again: the static part is cached and, under identity auth,
    the bearer token is reused until it nears expiry. Compare the result with
    the options a loaded table was opened with to know when to reload it.
    """
    options = dict(_static_options(table_uri, storage))
    if "azure_storage_account_key" not in options and "azure_storage_sas_key" not in options:
        options["bearer_token"] = _bearer.get()
    return options
