"""Connection strings, the three auth modes and deltalake storage options (no network)."""

from __future__ import annotations

import time

import pytest
from azure.core.credentials import AccessToken

from ingest_core.azure.auth import (
    STORAGE_SCOPE,
    TOKEN_REFRESH_MARGIN_S,
    BearerToken,
    delta_storage_options,
)
from ingest_core.azure.settings import (
    AZURITE_KEY,
    account_settings,
    from_connection_string,
    parse_connection_string,
)
from ingest_core.config import StorageConfig, from_env
from ingest_core.errors import ConfigurationError

KEY = "c2VjcmV0LWtleS1ub3QtcmVhbA=="
PORTAL = (
    f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};"
    "EndpointSuffix=core.windows.net"
)


def test_parse_keeps_equals_signs_in_values_and_ignores_key_case():
    values = parse_connection_string(f"accountname=acct; ACCOUNTKEY={KEY} ;")
    assert values == {"AccountName": "acct", "AccountKey": KEY}


def test_malformed_connection_string_error_does_not_leak_the_secret():
    secret = KEY.rstrip("=")
    with pytest.raises(ConfigurationError) as info:
        parse_connection_string(f"AccountName=acct;{secret}")
    assert secret not in str(info.value)
    assert "part 2" in str(info.value)


def test_development_storage_expands_to_the_azurite_account():
    settings = from_connection_string("UseDevelopmentStorage=true")
    assert settings.account_name == "devstoreaccount1"
    assert settings.account_key == AZURITE_KEY
    assert settings.blob_endpoint == "http://127.0.0.1:10000/devstoreaccount1"
    assert settings.table_endpoint == "http://127.0.0.1:10002/devstoreaccount1"
    assert settings.queue_url == "http://127.0.0.1:10001/devstoreaccount1"
    assert settings.emulator and settings.auth_mode == "key"


def test_portal_connection_string_derives_public_endpoints():
    settings = from_connection_string(PORTAL)
    assert settings.blob_endpoint == "https://acct.blob.core.windows.net"
    assert settings.table_endpoint == "https://acct.table.core.windows.net"
    assert settings.dfs_endpoint == "https://acct.dfs.core.windows.net"
    assert settings.queue_url == "https://acct.queue.core.windows.net"
    assert settings.auth_mode == "key" and not settings.emulator
    assert KEY not in repr(settings)


def test_sas_connection_string_with_explicit_endpoints():
    settings = from_connection_string(
        "BlobEndpoint=https://acct.blob.core.windows.net/;"
        "TableEndpoint=https://acct.table.core.windows.net/;SharedAccessSignature=?sv=1&sig=x"
    )
    assert (settings.account_name, settings.auth_mode, settings.sas_token) == (
        "acct", "sas", "sv=1&sig=x"
    )
    assert settings.dfs_endpoint == "https://acct.dfs.core.windows.net"
    assert settings.queue_url == "https://acct.queue.core.windows.net"


def test_an_azurite_blob_endpoint_alone_finds_the_queue_on_the_next_port():
    settings = from_connection_string(
        "AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1"
    )
    assert settings.queue_url == "http://127.0.0.1:10001/devstoreaccount1"


def test_account_name_alone_means_entra_identity():
    settings = account_settings(StorageConfig(account_name="acct"))
    assert settings.auth_mode == "identity"
    assert settings.blob_endpoint == "https://acct.blob.core.windows.net"
    assert settings.queue_url == "https://acct.queue.core.windows.net"


def test_url_naming_another_account_needs_identity_auth():
    assert account_settings(StorageConfig(account_name="acct"), "other").account_name == "other"
    assert account_settings(StorageConfig(), "other").auth_mode == "identity"
    with pytest.raises(ConfigurationError, match="'other'"):
        account_settings(StorageConfig(connection_string=PORTAL), "other")


def test_nothing_configured_names_the_variables():
    with pytest.raises(ConfigurationError, match="INGEST_STORAGE_CONNECTION"):
        account_settings(StorageConfig())


def test_environment_names_reach_the_storage_config():
    config = from_env(
        {"INGEST_STORAGE_CONNECTION": "UseDevelopmentStorage=true",
         "INGEST_STORAGE_ACCOUNT": "acct", "INGEST_TABLE_URI": "abfs://lake/orders",
         "INGEST_LEDGER_URI": "azure-table://ingestledger"}
    )
    assert config.storage == StorageConfig("UseDevelopmentStorage=true", "acct", proxies=False)
    assert (config.table_uri, config.ledger_uri) == ("abfs://lake/orders",
                                                     "azure-table://ingestledger")
    assert "UseDevelopmentStorage" not in repr(config)


def test_delta_options_for_azurite_use_the_emulator_switch():
    options = delta_storage_options(
        "abfs://lake/orders", StorageConfig(connection_string="UseDevelopmentStorage=true")
    )
    assert options == {
        "azure_storage_account_name": "devstoreaccount1",
        "azure_storage_account_key": AZURITE_KEY,
        "azure_storage_use_emulator": "true",
    }


def test_delta_options_for_a_key_account():
    options = delta_storage_options(
        "abfss://lake@acct.dfs.core.windows.net/orders", StorageConfig(connection_string=PORTAL)
    )
    assert options == {"azure_storage_account_name": "acct", "azure_storage_account_key": KEY}


def test_delta_options_for_an_emulator_on_another_port_name_the_endpoint():
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
        "BlobEndpoint=http://127.0.0.1:20000/devstoreaccount1;"
    )
    options = delta_storage_options("abfs://lake/t", StorageConfig(connection_string=connection))
    assert options["azure_storage_endpoint"] == "http://127.0.0.1:20000/devstoreaccount1"
    assert options["allow_http"] == "true"
    assert "azure_storage_use_emulator" not in options


def test_delta_options_refuse_path_style_table_urls():
    with pytest.raises(ConfigurationError, match="abfs://container/path"):
        delta_storage_options(
            "http://127.0.0.1:10000/devstoreaccount1/lake/orders",
            StorageConfig(connection_string="UseDevelopmentStorage=true"),
        )


def test_delta_options_are_a_fresh_dict_each_call():
    storage = StorageConfig(connection_string="UseDevelopmentStorage=true")
    first = delta_storage_options("abfs://lake/orders", storage)
    first["azure_storage_account_key"] = "tampered"
    assert delta_storage_options("abfs://lake/orders", storage)["azure_storage_account_key"] == (
        AZURITE_KEY
    )


class ShortLivedTokens:
    """A TokenCredential issuing numbered tokens that live `lifetime` seconds."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.issued = 0

    def get_token(self, *scopes: str, **_: object) -> AccessToken:
        assert scopes == (STORAGE_SCOPE,)
        self.issued += 1
        return AccessToken(f"token-{self.issued}", int(time.time() + self.lifetime))


def test_bearer_token_is_reused_until_it_nears_expiry():
    credential = ShortLivedTokens(lifetime=3600)
    token = BearerToken(lambda: credential)
    assert [token.get(), token.get(), token.get()] == ["token-1"] * 3
    assert credential.issued == 1


def test_bearer_token_near_expiry_is_replaced():
    credential = ShortLivedTokens(lifetime=TOKEN_REFRESH_MARGIN_S - 5)
    token = BearerToken(lambda: credential)
    assert [token.get(), token.get()] == ["token-1", "token-2"]


def test_proxy_settings_are_looked_up_only_when_a_proxy_variable_is_set():
    from ingest_core.config import from_env

    assert from_env({"INGEST_TABLE_URI": "t"}).storage.proxies is False
    assert from_env({"INGEST_TABLE_URI": "t", "HTTPS_PROXY": "http://p:3128"}).storage.proxies
    assert from_env({"INGEST_TABLE_URI": "t", "http_proxy": "http://p:3128"}).storage.proxies


@pytest.mark.azurite
def test_clients_go_through_the_environments_proxy_only_when_told_to(
    azurite, unique_name, monkeypatch
):
    from azure.core.exceptions import ServiceRequestError

    from ingest_core.azure.auth import blob_service
    from ingest_core.azure.settings import account_settings

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    direct = blob_service(account_settings(StorageConfig(connection_string=azurite,
                                                         proxies=False)))
    direct.create_container(unique_name)  # the variable was not read
    proxied = blob_service(account_settings(StorageConfig(connection_string=azurite)))
    with pytest.raises(ServiceRequestError):
        proxied.get_container_client(unique_name).get_container_properties(retry_total=0)
    direct.delete_container(unique_name)
