"""Screening BlobCreated events: what is ingested, ignored or refused, before any fetch."""

from __future__ import annotations

import pytest

from ingest_core.config import IngestConfig, StorageConfig
from ingest_core.errors import ConfigurationError
from ingest_core.events import (
    COMPLETED_WRITES,
    LandingPolicy,
    build_blob_created,
    redact,
    screen_blob,
    screen_event,
)

ACCOUNT = "landingacct"
BLOB = f"https://{ACCOUNT}.blob.core.windows.net"


@pytest.fixture
def policy() -> LandingPolicy:
    config = IngestConfig(
        table_uri="./lake/t",
        storage=StorageConfig(account_name=ACCOUNT),
        landing_path="landing/{name}",
        landing_containers=("landing", "replay"),
    )
    return LandingPolicy.from_config(config)


def event(url: str, api: str = "PutBlob", length: int = 10, **kw) -> dict:
    return build_blob_created(url, content_length=length, api=api, **kw)


@pytest.mark.parametrize("api", sorted(COMPLETED_WRITES))
def test_completed_writes_in_a_landing_container_are_accepted(policy, api):
    verdict = screen_event(event(f"{BLOB}/landing/2024/orders.csv", api=api), policy)
    assert verdict.accepted
    assert verdict.url == f"{BLOB}/landing/2024/orders.csv"
    assert verdict.event_id


@pytest.mark.parametrize("api", ["CreateFile", "PutBlock", "SetBlobMetadata", None])
def test_writes_that_are_not_complete_are_ignored(policy, api):
    raw = event(f"{BLOB}/landing/a.csv")
    raw["data"]["api"] = api
    verdict = screen_event(raw, policy)
    assert verdict.decision == "ignore"
    assert "not a completed write" in verdict.reason


def test_zero_length_blobs_are_ignored(policy):
    verdict = screen_event(event(f"{BLOB}/landing/empty.csv", length=0), policy)
    assert verdict.decision == "ignore"
    assert "zero-length" in verdict.reason
    assert screen_blob(f"{BLOB}/landing/empty.csv", 0, policy).decision == "ignore"


def test_unknown_length_is_not_taken_for_zero(policy):
    raw = event(f"{BLOB}/landing/a.csv")
    del raw["data"]["contentLength"]
    assert screen_event(raw, policy).accepted


@pytest.mark.parametrize(
    "url",
    [
        "https://otheracct.blob.core.windows.net/landing/a.csv",
        f"https://{ACCOUNT}.blob.core.windows.net.evil.example/landing/a.csv",
        "https://evil.example/landingacct/landing/a.csv",
        f"http://127.0.0.1:10000/{ACCOUNT}/landing/a.csv",
        "http://169.254.169.254/metadata/identity/oauth2/token",
        "file:///etc/passwd",
    ],
)
def test_urls_outside_the_landing_account_are_refused(policy, url):
    raw = event(f"{BLOB}/landing/a.csv")
    raw["data"]["url"] = url
    verdict = screen_event(raw, policy)
    assert verdict.decision == "refuse"
    assert verdict.url is None


@pytest.mark.parametrize(
    "url",
    [
        f"{BLOB}/archive/a.csv",
        f"{BLOB}/landing",
        f"{BLOB}/landing/../archive/a.csv",
        f"{BLOB}/landing/%2E%2E/archive/a.csv",
        f"{BLOB}/landing/a.csv?sv=2024&sig=SECRET",
        f"https://user:pw@{ACCOUNT}.blob.core.windows.net/landing/a.csv",
    ],
)
def test_urls_outside_the_landing_containers_are_refused(policy, url):
    raw = event(f"{BLOB}/landing/a.csv")
    raw["data"]["url"] = url
    verdict = screen_event(raw, policy)
    assert verdict.decision == "refuse"
    assert "SECRET" not in verdict.reason


def test_a_container_named_in_the_setting_is_accepted(policy):
    assert screen_event(event(f"{BLOB}/replay/a.csv"), policy).accepted


def test_adls_urls_are_read_as_blob_urls(policy):
    dfs = f"https://{ACCOUNT}.dfs.core.windows.net/landing/dir/a.csv"
    verdict = screen_event(event(dfs, api="FlushWithClose"), policy)
    assert verdict.url == f"{BLOB}/landing/dir/a.csv"


@pytest.mark.parametrize(
    "raw",
    [
        {"eventType": "Microsoft.Storage.BlobDeleted", "data": {"url": f"{BLOB}/landing/a"}},
        {"eventType": "Microsoft.Storage.BlobCreated", "data": "not an object"},
        {"eventType": "Microsoft.Storage.BlobCreated", "data": {"api": "PutBlob"}},
        {"type": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {}},
        {},
    ],
)
def test_other_and_malformed_events_are_invalid(policy, raw):
    assert screen_event(raw, policy).decision == "invalid"


def test_cloud_events_are_screened_like_event_grid_ones(policy):
    raw = event(f"{BLOB}/landing/a.csv", schema="cloudevents")
    assert raw["specversion"] == "1.0" and raw["type"] == "Microsoft.Storage.BlobCreated"
    assert screen_event(raw, policy).accepted


def test_built_events_carry_the_event_grid_shape():
    raw = event(
        f"abfss://landing@{ACCOUNT}.dfs.core.windows.net/dir/a b.csv",
        etag="0x8D",
        account_resource_id="/subscriptions/s/resourceGroups/g/providers/"
        f"Microsoft.Storage/storageAccounts/{ACCOUNT}",
    )
    assert raw["eventType"] == "Microsoft.Storage.BlobCreated"
    assert raw["subject"] == "/blobServices/default/containers/landing/blobs/dir/a b.csv"
    assert raw["data"]["url"] == f"{BLOB}/landing/dir/a%20b.csv"
    assert raw["data"]["eTag"] == "0x8D"
    assert raw["topic"].endswith(ACCOUNT)


def test_building_an_event_for_an_abfs_url_without_account_explains():
    with pytest.raises(ConfigurationError, match="name the account"):
        build_blob_created("abfs://landing/a.csv", content_length=1)


def test_azurite_path_style_urls_are_checked_against_the_emulator_account():
    config = IngestConfig(
        table_uri="./lake/t",
        storage=StorageConfig(connection_string="UseDevelopmentStorage=true"),
        landing_path="landing/{name}",
    )
    policy = LandingPolicy.from_config(config)
    ok = "http://127.0.0.1:10000/devstoreaccount1/landing/a.csv"
    assert screen_event(event(ok), policy).url == ok
    other = "http://127.0.0.1:10000/otheraccount/landing/a.csv"
    assert screen_event(event(other), policy).decision == "refuse"


def test_a_policy_needs_a_landing_container():
    config = IngestConfig(table_uri="./lake/t", storage=StorageConfig(account_name=ACCOUNT))
    with pytest.raises(ConfigurationError, match="INGEST_LANDING_PATH"):
        LandingPolicy.from_config(config)


def test_redact_strips_sas_tokens_and_keys():
    text = (
        "GET https://a.blob.core.windows.net/c/x.csv?sv=1&sig=abc123 failed; "
        "AccountKey=c2VjcmV0==;SharedAccessSignature=sv=1&sig=zzz"
    )
    shown = redact(text)
    assert "abc123" not in shown and "c2VjcmV0" not in shown and "zzz" not in shown
    assert "https://a.blob.core.windows.net/c/x.csv?***" in shown
