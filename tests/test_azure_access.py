"""Wrong credentials on Azurite give errors that say what to fix, never the secret."""

from __future__ import annotations

import pytest

from ingest_core.config import StorageConfig
from ingest_core.errors import ConfigurationError, LedgerUnavailableError
from ingest_core.ledger import open_ledger
from ingest_core.sources.azure_blob import AzureBlobSource

pytestmark = pytest.mark.azurite

WRONG_KEY = "d3Jvbmcta2V5LW5vdC10aGUtYXp1cml0ZS1vbmU="
WRONG = StorageConfig(
    connection_string=(
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={WRONG_KEY};"
        "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
        "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
    )
)


def test_listing_with_a_wrong_key_is_a_configuration_error(azurite, unique_name):
    with pytest.raises(ConfigurationError, match="not authorized to list") as info:
        list(AzureBlobSource(WRONG).list(f"abfs://{unique_name}/raw/"))
    assert WRONG_KEY not in str(info.value)


def test_opening_the_ledger_with_a_wrong_key_is_ledger_unavailable(azurite, unique_name):
    with pytest.raises(LedgerUnavailableError, match="not authorized") as info:
        open_ledger(f"azure-table://{unique_name}", WRONG)
    assert WRONG_KEY not in str(info.value)


@pytest.mark.parametrize("uri", ["azure-table://", "azure-table://a", "azure-table://no-dash",
                                 "azure-table://1abc"])
def test_bad_ledger_table_names_are_refused(uri):
    with pytest.raises(ConfigurationError, match="3-63 letters and digits"):
        open_ledger(uri, StorageConfig(connection_string="UseDevelopmentStorage=true"))
