"""Every accepted Blob/ADLS URL form parses to account, container and blob name, and back."""

from __future__ import annotations

import pytest

from ingest_core.azure.urls import BlobLocation, parse_blob_url, quote_name
from ingest_core.errors import ConfigurationError


@pytest.mark.parametrize(
    ("url", "account", "container", "name", "base"),
    [
        ("abfss://landing@acct.dfs.core.windows.net/raw/a.csv", "acct", "landing", "raw/a.csv",
         "abfss://landing@acct.dfs.core.windows.net/"),
        ("abfs://landing@acct.dfs.core.windows.net/raw/", "acct", "landing", "raw/",
         "abfs://landing@acct.dfs.core.windows.net/"),
        ("abfss://landing@acct.blob.core.windows.net", "acct", "landing", "",
         "abfss://landing@acct.blob.core.windows.net/"),
        ("abfs://landing/raw/", None, "landing", "raw/", "abfs://landing/"),
        ("abfs://landing", None, "landing", "", "abfs://landing/"),
        ("az://lake/orders", None, "lake", "orders", "az://lake/"),
        ("https://acct.blob.core.windows.net/landing/raw/a.csv", "acct", "landing", "raw/a.csv",
         "https://acct.blob.core.windows.net/landing/"),
        ("https://acct.dfs.core.chinacloudapi.cn/landing/x", "acct", "landing", "x",
         "https://acct.dfs.core.chinacloudapi.cn/landing/"),
        ("http://127.0.0.1:10000/devstoreaccount1/landing/raw/a.csv", "devstoreaccount1",
         "landing", "raw/a.csv", "http://127.0.0.1:10000/devstoreaccount1/landing/"),
        ("http://localhost:10000/devstoreaccount1/landing", "devstoreaccount1", "landing", "",
         "http://localhost:10000/devstoreaccount1/landing/"),
    ],
)
def test_accepted_forms_parse(url, account, container, name, base):
    location = parse_blob_url(url)
    assert (location.account, location.container, location.name, location.base) == (
        account, container, name, base
    )


def test_only_the_emulator_form_is_path_style():
    assert parse_blob_url("http://127.0.0.1:10000/devstoreaccount1/c/x").path_style
    assert not parse_blob_url("https://acct.blob.core.windows.net/c/x").path_style
    assert not parse_blob_url("abfs://c/x").path_style


@pytest.mark.parametrize(
    "name",
    ["plain/a.parquet", "sp ace/100%.csv", "a#b?c.csv", "tab\there", "ünïcödé/日本 😀.csv",
     "quotes/'\"&=+@:.csv", "back\\slash.csv"],
)
def test_child_urls_round_trip_any_blob_name(name):
    for root in ("abfs://landing/", "abfss://landing@acct.dfs.core.windows.net/",
                 "https://acct.blob.core.windows.net/landing/",
                 "http://127.0.0.1:10000/devstoreaccount1/landing/"):
        url = parse_blob_url(root).url_of(name)
        parsed = parse_blob_url(url)
        assert (parsed.container, parsed.name) == ("landing", name)


def test_quoting_keeps_readable_names_as_they_are():
    assert quote_name("raw/2024/ünï-ö_1.parquet") == "raw/2024/ünï-ö_1.parquet"
    assert quote_name("a b#c?d%e") == "a%20b%23c%3Fd%25e"


def test_url_of_builds_in_the_same_form():
    location = parse_blob_url("abfs://landing/raw/")
    assert location.url_of("raw/a b.csv") == "abfs://landing/raw/a%20b.csv"
    assert isinstance(location, BlobLocation)


@pytest.mark.parametrize(
    "url",
    ["s3://bucket/key", "abfs:///path", "abfss://@acct.dfs.core.windows.net/x",
     "https://acct.blob.core.windows.net/", "http://127.0.0.1:10000/devstoreaccount1",
     "abfs://landing/a#b.csv", "https://acct.blob.core.windows.net/c/x?sv=1&sig=2",
     "abfss://landing@/x"],
)
def test_unusable_urls_are_refused_with_the_accepted_forms(url):
    with pytest.raises(ConfigurationError, match="abfss://container@account"):
        parse_blob_url(url)
