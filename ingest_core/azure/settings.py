"""Which storage account to use and how to sign in to it, from an `ingest_core` StorageConfig.

Three ways to authenticate, picked by what the configuration holds:

- shared key: a connection string with `AccountKey` (the portal's, or
  `UseDevelopmentStorage=true` for Azurite);
- SAS: a connection string with `SharedAccessSignature` and endpoints;
- Microsoft Entra identity: only an account name (`INGEST_STORAGE_ACCOUNT`,
  or a connection string with `AccountName` and no secret), signed in with
  azure-identity's `DefaultAzureCredential`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from ingest_core.config import StorageConfig
from ingest_core.errors import ConfigurationError

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
"""The well-known, public key of the emulator's account (not a secret)."""
AZURITE_BLOB_ENDPOINT = f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}"
AZURITE_TABLE_ENDPOINT = f"http://127.0.0.1:10002/{AZURITE_ACCOUNT}"
AZURITE_QUEUE_ENDPOINT = f"http://127.0.0.1:10001/{AZURITE_ACCOUNT}"
DEFAULT_SUFFIX = "core.windows.net"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

AuthMode = Literal["key", "sas", "identity"]

_KNOWN_KEYS = (
    "DefaultEndpointsProtocol",
    "AccountName",
    "AccountKey",
    "SharedAccessSignature",
    "EndpointSuffix",
    "BlobEndpoint",
    "TableEndpoint",
    "QueueEndpoint",
    "FileEndpoint",
    "DfsEndpoint",
    "UseDevelopmentStorage",
    "DevelopmentStorageProxyUri",
    "BlobSecondaryEndpoint",
    "TableSecondaryEndpoint",
    "QueueSecondaryEndpoint",
    "FileSecondaryEndpoint",
)
_CANONICAL = {key.lower(): key for key in _KNOWN_KEYS}


@dataclass(frozen=True)
class AccountSettings:
    """One storage account: its endpoints and the secret (if any) that signs requests."""

    account_name: str
    blob_endpoint: str
    """Blob service URL without a trailing slash, e.g. https://acct.blob.core.windows.net."""
    table_endpoint: str
    dfs_endpoint: str
    account_key: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)
    emulator: bool = False
    """True for Azurite: path-style endpoints on a local host."""
    proxies: bool = True
    """Whether its clients read proxy settings from the environment (`StorageConfig.proxies`)."""
    queue_endpoint: str = ""
    """Queue service URL (the Functions host's poison queue); empty: derived from the blob one."""

    @property
    def queue_url(self) -> str:
        """The Queue service URL: `queue_endpoint`, else the blob endpoint's `.queue.` twin."""
        return self.queue_endpoint or self.blob_endpoint.replace(".blob.", ".queue.")

    @property
    def auth_mode(self) -> AuthMode:
        """`key`, `sas` or `identity` (Microsoft Entra via DefaultAzureCredential)."""
        if self.account_key:
            return "key"
        if self.sas_token:
            return "sas"
        return "identity"

    @property
    def default_endpoints(self) -> bool:
        """Whether the blob endpoint is the public cloud's `https://<account>.blob.<suffix>`."""
        return urlsplit(self.blob_endpoint).hostname == (
            f"{self.account_name}.blob.{DEFAULT_SUFFIX}"
        )


def parse_connection_string(text: str) -> dict[str, str]:
    """Split `Key=Value;...` into a dict with canonical key names.

    Values may contain `=` (keys and SAS tokens do). Errors never quote the
    string: it holds a secret.
    """
    values: dict[str, str] = {}
    for number, segment in enumerate(text.strip().split(";"), start=1):
        segment = segment.strip()
        if not segment:
            continue
        key, sep, value = segment.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(
                f"INGEST_STORAGE_CONNECTION: part {number} is not Key=Value; "
                "copy the connection string from the storage account's Access keys page"
            )
        name = key.strip()
        values[_CANONICAL.get(name.lower(), name)] = value.strip()
    return values


def azurite_settings() -> AccountSettings:
    """The emulator's well-known account on its default ports."""
    return AccountSettings(
        account_name=AZURITE_ACCOUNT,
        blob_endpoint=AZURITE_BLOB_ENDPOINT,
        table_endpoint=AZURITE_TABLE_ENDPOINT,
        dfs_endpoint=AZURITE_BLOB_ENDPOINT,
        queue_endpoint=AZURITE_QUEUE_ENDPOINT,
        account_key=AZURITE_KEY,
        emulator=True,
    )


def identity_settings(account: str) -> AccountSettings:
    """An account in the public cloud reached with Microsoft Entra identity."""
    return AccountSettings(
        account_name=account,
        blob_endpoint=f"https://{account}.blob.{DEFAULT_SUFFIX}",
        table_endpoint=f"https://{account}.table.{DEFAULT_SUFFIX}",
        dfs_endpoint=f"https://{account}.dfs.{DEFAULT_SUFFIX}",
        queue_endpoint=f"https://{account}.queue.{DEFAULT_SUFFIX}",
    )


def _is_local(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOCAL_HOSTS


def _account_from_endpoint(url: str) -> str | None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host in LOCAL_HOSTS or host.replace(".", "").isdigit():
        segment = parts.path.strip("/").split("/")[0]
        return segment or None
    return host.split(".")[0] or None


def _queue_twin(blob: str) -> str:
    """The Queue endpoint beside a Blob one: `.queue.` for a host name, Azurite's next port."""
    if _is_local(blob):
        return blob.replace(":10000/", ":10001/", 1)
    return blob.replace(".blob.", ".queue.")


def from_connection_string(text: str) -> AccountSettings:
    """Account settings from a connection string (`UseDevelopmentStorage=true` means Azurite)."""
    values = parse_connection_string(text)
    if values.get("UseDevelopmentStorage", "").lower() == "true":
        return azurite_settings()
    protocol = values.get("DefaultEndpointsProtocol", "https").lower()
    suffix = values.get("EndpointSuffix", DEFAULT_SUFFIX)
    explicit_blob = values.get("BlobEndpoint", "").rstrip("/")
    account = values.get("AccountName") or (
        _account_from_endpoint(explicit_blob) if explicit_blob else None
    )
    if not account:
        raise ConfigurationError(
            "INGEST_STORAGE_CONNECTION has no AccountName (nor a BlobEndpoint to take it from); "
            "copy the full connection string from the storage account's Access keys page"
        )
    blob = explicit_blob or f"{protocol}://{account}.blob.{suffix}"
    table = values.get("TableEndpoint", "").rstrip("/") or (
        blob.replace(".blob.", ".table.") if explicit_blob else f"{protocol}://{account}.table.{suffix}"
    )
    dfs = values.get("DfsEndpoint", "").rstrip("/") or (
        blob.replace(".blob.", ".dfs.") if explicit_blob else f"{protocol}://{account}.dfs.{suffix}"
    )
    queue = values.get("QueueEndpoint", "").rstrip("/") or (
        _queue_twin(blob) if explicit_blob else f"{protocol}://{account}.queue.{suffix}"
    )
    return AccountSettings(
        account_name=account,
        blob_endpoint=blob,
        table_endpoint=table,
        dfs_endpoint=dfs,
        queue_endpoint=queue,
        account_key=values.get("AccountKey") or None,
        sas_token=values.get("SharedAccessSignature", "").lstrip("?") or None,
        emulator=account == AZURITE_ACCOUNT or _is_local(blob),
    )


def account_settings(storage: StorageConfig, account: str | None = None) -> AccountSettings:
    """The account to use for a URL naming `account` (None: the configured one).

    The connection string wins over `INGEST_STORAGE_ACCOUNT`. A URL may name
    another account only under identity auth: a key or SAS signs for one account.
    """
    settings = _account_settings(storage, account)
    if settings.proxies == storage.proxies:
        return settings
    return dataclasses.replace(settings, proxies=storage.proxies)


@lru_cache(maxsize=64)
def _account_settings(storage: StorageConfig, account: str | None = None) -> AccountSettings:
    """`account_settings`, cached, before the proxy setting is applied."""
    if storage.connection_string:
        settings = from_connection_string(storage.connection_string)
    elif storage.account_name:
        settings = identity_settings(storage.account_name)
    elif account:
        return identity_settings(account)
    else:
        raise ConfigurationError(
            "no storage account configured: set INGEST_STORAGE_CONNECTION (a connection "
            "string, or UseDevelopmentStorage=true for Azurite) or INGEST_STORAGE_ACCOUNT "
            "(signs in with Microsoft Entra identity)"
        )
    if account is None or account == settings.account_name:
        return settings
    if settings.auth_mode == "identity" and settings.default_endpoints:
        return identity_settings(account)
    raise ConfigurationError(
        f"the URL names storage account {account!r} but the configured connection is for "
        f"{settings.account_name!r}; use that account's connection string, or identity auth"
    )
