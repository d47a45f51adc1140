"""The deployment (infra/, azure.yaml, .funcignore) agrees with the code it deploys.

Nothing here deploys: the Bicep template is checked by checkov in CI, and
these tests hold its settings and Event Grid filters to what ingest_core reads
and screens, so the two cannot drift apart silently.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ingest_core.events import COMPLETED_WRITES, INGESTED_EVENT_TYPES, RENAMES

REPO = Path(__file__).resolve().parent.parent
RESOURCES = (REPO / "infra" / "resources.bicep").read_text()


def _bicep_list(name: str) -> list[str]:
    """The string items of `var NAME = [ ... ]` in resources.bicep."""
    match = re.search(rf"^var {name} = \[\n(.*?)^\]", RESOURCES, re.S | re.M)
    assert match, f"resources.bicep has no `var {name} = [...]`"
    return re.findall(r"'([^']+)'", match[1])


def _app_settings() -> dict[str, str]:
    pairs = re.findall(r"name: '([^']+)'\n\s*value: '([^']*)'", RESOURCES)
    return dict(pairs)


def test_event_grid_takes_exactly_the_writes_the_app_ingests():
    assert sorted(_bicep_list("completedWrites")) == sorted(COMPLETED_WRITES)
    assert "SftpCommit" in COMPLETED_WRITES


def test_event_grid_takes_exactly_the_renames_the_app_ingests():
    assert sorted(_bicep_list("renames")) == sorted(RENAMES)


def test_every_subscribed_event_type_is_one_the_app_screens():
    subscribed = set(re.findall(r"'(Microsoft\.Storage\.(?:Blob|Directory)[A-Za-z]+)'", RESOURCES))
    assert subscribed == set(INGESTED_EVENT_TYPES)


def test_renames_go_to_the_event_grid_trigger_not_the_blob_extension():
    """A rename has no data.url: the blob extension's webhook cannot take it."""
    block = RESOURCES[RESOURCES.index("resource onRename") :]
    block = block[: block.index("\n}\n")]
    assert "endpointType: 'AzureFunction'" in block
    assert "/functions/ingest_replay" in block
    assert "runtime/webhooks/blobs" not in block


def test_every_subscription_dead_letters_and_none_filters_on_content_length():
    """Microsoft's SftpCommit example says contentLength 0: a length filter would drop it."""
    subscriptions = RESOURCES.count("Microsoft.EventGrid/systemTopics/eventSubscriptions@")
    assert subscriptions == RESOURCES.count("deadLetterWithResourceIdentity: deadLetter") == 3
    assert "contentLength" not in RESOURCES


def test_flex_app_settings_use_the_user_assigned_identity():
    settings = _app_settings()
    assert "FUNCTIONS_WORKER_RUNTIME" not in settings, "not an app setting on Flex Consumption"
    for connection in ("AzureWebJobsStorage", "INGEST_STORAGE"):
        assert settings[f"{connection}__credential"] == "managedidentity"
        assert settings[f"{connection}__clientId"] == "${identity.properties.clientId}"
    assert settings["AZURE_CLIENT_ID"] == "${identity.properties.clientId}"
    assert "AccountKey" not in RESOURCES and "listKeys(landing" not in RESOURCES


def test_the_template_sets_every_setting_the_app_requires():
    settings = _app_settings()
    sample = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    optional = {
        "FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "INGEST_STORAGE",
        "INGEST_STORAGE_CONNECTION",  # identity instead of a connection string
        "INGEST_FORMAT", "INGEST_TRANSFORM", "INGEST_ROUTES", "INGEST_EVENTGRID_TOPIC_ENDPOINT",
        "INGEST_EVENTGRID_KEY", "INGEST_SCHEMA_MODE", "INGEST_LINEAGE", "INGEST_LEASE_SECONDS",
        "INGEST_MAX_ATTEMPTS", "INGEST_BATCH_FILES", "INGEST_BATCH_SECONDS", "INGEST_WORKERS",
        "INGEST_TXN_RETENTION", "INGEST_MODE", "INGEST_MERGE_KEYS", "INGEST_MERGE_SEQUENCE",
        "INGEST_MERGE_DELETE_WHEN", "INGEST_CLEANUP", "INGEST_CLEANUP_AFTER",
        "INGEST_CSV_DELIMITER", "INGEST_CSV_QUOTE", "INGEST_CSV_ESCAPE", "INGEST_CSV_NULL",
        "INGEST_CSV_NO_HEADER",
        "INGEST_CSV_DECIMAL", "INGEST_ENCODING", "INGEST_SCHEMA_HINTS", "INGEST_BAD_ROWS",
        "INGEST_BAD_ROWS_TABLE", "INGEST_NORMALIZE_NAMES", "INGEST_TIMEZONE",
        # the poison queue is found through AzureWebJobsStorage__accountName; the sweep is opt-in
        "INGEST_TRIGGER_STORAGE", "INGEST_POISON_QUEUE", "INGEST_SWEEP_PREFIXES",
        "INGEST_SWEEP_MAX_FILES",
    }
    missing = sorted(set(sample) - optional - set(settings))
    assert not missing, f"infra/resources.bicep does not set {missing}"
    assert settings["INGEST_LEDGER_URI"].startswith("azure-table://")
    assert settings["INGEST_TABLE_URI"].startswith("abfss://")


def test_the_app_is_python_311_on_flex_consumption():
    assert "tier: 'FlexConsumption'" in RESOURCES
    runtime = re.search(r"runtime: \{\s*name: '(\w+)'\s*version: '([\d.]+)'", RESOURCES)
    assert runtime and runtime.groups() == ("python", "3.11")


def test_azure_yaml_deploys_this_folder_as_the_function_app_tagged_in_the_template():
    text = (REPO / "azure.yaml").read_text()
    assert re.search(r"^infra:\n  provider: bicep\n  path: infra\n  module: main$", text, re.M)
    assert re.search(
        r"^  ingest:\n    project: \.\n    language: python\n    host: function$", text, re.M
    )
    assert "'azd-service-name': 'ingest'" in RESOURCES


def test_azd_parameters_name_the_template_parameters():
    parameters = json.loads((REPO / "infra" / "main.parameters.json").read_text())["parameters"]
    main = (REPO / "infra" / "main.bicep").read_text()
    declared = set(re.findall(r"^param (\w+) ", main, re.M))
    assert set(parameters) <= declared
    assert {"environmentName", "location"} <= set(parameters)


def test_every_checkov_skip_gives_a_reason():
    skips = re.findall(r"checkov:skip=([A-Z0-9_]+)(:?)(.*)", RESOURCES)
    assert skips
    for check, colon, reason in skips:
        assert colon and len(reason.strip()) > 20, f"skip of {check} needs a written reason"


@pytest.mark.parametrize("excluded", ["build", ".venv", "tests", "bench", "infra", "node_modules"])
def test_funcignore_keeps_development_files_out_of_the_package(excluded):
    patterns = (REPO / ".funcignore").read_text().split()
    assert excluded in patterns


def _doctor_gate(tmp_path: Path, *items: dict[str, str]) -> int:
    import subprocess
    import sys

    report = tmp_path / "doctor.json"
    report.write_text(json.dumps({"results": [{"title": "t", "items": list(items)}]}))
    done = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "checks.py"), "doctor", str(report)],
        capture_output=True, text=True, timeout=60,
    )
    return done.returncode


def test_the_ci_doctor_gate_passes_only_the_expected_warnings(tmp_path):
    def item(status: str, rule: str) -> dict[str, str]:
        return {"status": status, "rule_id": rule, "label": rule}

    expected = [item("warn", "check_func_cli"), item("warn", "check_local_settings")]
    assert _doctor_gate(tmp_path, item("pass", "x"), *expected) == 0
    assert _doctor_gate(tmp_path, *expected, item("warn", "check_native_dependency_risk")) == 1
    assert _doctor_gate(tmp_path, item("fail", "check_func_cli")) == 1
