"""What the Functions host would see: the bindings of function_app.py and the app's files.

No host runs here, so `%SETTING%` substitution, connections and the extension
bundle are checked as the JSON the host would index, not exercised.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def indexed() -> list:
    """The app's functions as the worker indexes them (`get_functions` runs once per app)."""
    import function_app

    return function_app.app.get_functions()


@pytest.fixture(scope="module")
def bindings(indexed) -> dict[str, list[dict]]:
    return {
        fn.get_function_name(): [json.loads(raw) for raw in fn.get_raw_bindings()]
        for fn in indexed
    }


def _trigger(bindings: dict[str, list[dict]], name: str) -> dict:
    triggers = [b for b in bindings[name] if b["type"].endswith("Trigger")]
    assert len(triggers) == 1, bindings[name]
    return triggers[0]


def test_the_app_has_exactly_the_five_functions(bindings):
    assert sorted(bindings) == [
        "file_status", "ingest_on_arrival", "ingest_replay", "list_files", "maintenance",
    ]


def test_arrival_is_an_event_grid_sourced_blob_trigger_on_the_landing_setting(bindings):
    trigger = _trigger(bindings, "ingest_on_arrival")
    assert trigger["type"] == "blobTrigger"
    assert trigger["source"] == "EventGrid"
    assert trigger["path"] == "%INGEST_LANDING_PATH%"
    assert trigger["connection"] == "INGEST_STORAGE"
    assert trigger["direction"] == "IN"


def test_arrival_takes_a_blob_client_so_the_host_passes_no_bytes(indexed):
    """As the Python worker indexes it: the parameter's type decides deferred binding."""
    import typing
    from types import SimpleNamespace

    from azurefunctions.extensions.base.utils import get_raw_bindings

    [fn] = [f for f in indexed if f.get_function_name() == "ingest_on_arrival"]
    hints = typing.get_type_hints(fn.get_user_function())
    types = {name: SimpleNamespace(pytype=t) for name, t in hints.items() if name != "return"}
    raw, _ = get_raw_bindings(fn, types)
    [trigger] = [json.loads(r) for r in raw]
    assert trigger["properties"] == {"SupportsDeferredBinding": True}


def test_replay_is_an_event_grid_trigger(bindings):
    assert _trigger(bindings, "ingest_replay")["type"] == "eventGridTrigger"


@pytest.mark.parametrize(
    ("name", "route"), [("file_status", "files/{sha256}"), ("list_files", "files")]
)
def test_status_routes_are_get_only_with_function_keys(bindings, name, route):
    trigger = _trigger(bindings, name)
    assert trigger["type"] == "httpTrigger"
    assert trigger["route"] == route
    assert trigger["methods"] == ["GET"]
    assert trigger["authLevel"] == "FUNCTION"
    outputs = [b for b in bindings[name] if b["direction"] == "OUT"]
    assert outputs == [{"direction": "OUT", "type": "http", "name": "$return"}]


def test_maintenance_timer_schedule_comes_from_a_setting(bindings):
    trigger = _trigger(bindings, "maintenance")
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == "%INGEST_MAINTENANCE_SCHEDULE%"
    assert "runOnStartup" not in trigger


def test_function_app_holds_no_ingestion_logic():
    """Every function body is one call into ingest_core.functions, after its docstring."""
    tree = ast.parse((REPO / "function_app.py").read_text())
    defs = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert len(defs) == 5
    for node in defs:
        assert ast.get_docstring(node), f"{node.name} needs a docstring"
        body = node.body[1:]
        assert len(body) == 1 and isinstance(body[0], ast.Expr | ast.Return), node.name
        call = body[0].value
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute), node.name
        assert ast.unparse(call.func.value) == "functions", node.name


def test_host_json_pins_version_bundle_and_logging_and_leaves_the_plan_its_timeout():
    host = json.loads((REPO / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }
    assert "functionTimeout" not in host  # Flex's default is 30 min; a value here would cut it
    assert host["logging"]["logLevel"]["default"]
    # per-file lines are traces: never sampled away
    assert "Trace" in host["logging"]["applicationInsights"]["samplingSettings"]["excludedTypes"]


def _settings_read_by_the_app() -> set[str]:
    config = (REPO / "ingest_core" / "config.py").read_text()
    app = (REPO / "function_app.py").read_text()
    names = set(re.findall(r'"(INGEST_[A-Z_]+)"', config))
    names |= set(re.findall(r"%([A-Z_]+)%", app))
    names |= set(re.findall(r'connection="([A-Z_]+)"', app))
    return names - {"INGEST_LOG_FORMAT", "INGEST_LOG_LEVEL"}  # the command line's logs only


def test_sample_settings_name_every_setting_the_app_reads():
    values = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert values["INGEST_STORAGE"] == "UseDevelopmentStorage=true"
    missing = _settings_read_by_the_app() - set(values)
    assert not missing, f"add {sorted(missing)} to local.settings.sample.json"
    optional = {"INGEST_FORMAT", "INGEST_TRANSFORM", "INGEST_ROUTES",
                "INGEST_EVENTGRID_TOPIC_ENDPOINT", "INGEST_EVENTGRID_KEY",  # CLI replay only
                "INGEST_MERGE_KEYS", "INGEST_MERGE_SEQUENCE", "INGEST_MERGE_DELETE_WHEN",
                "INGEST_CLEANUP", "INGEST_CLEANUP_AFTER",  # merge mode, source clean-up
                "INGEST_SWEEP_PREFIXES",  # the maintenance timer's sweep: off unless set
                # reading options with no default value (see README "Reading exports")
                "INGEST_CSV_ESCAPE", "INGEST_CSV_NULL", "INGEST_SCHEMA_HINTS",
                "INGEST_BAD_ROWS_TABLE", "INGEST_TIMEZONE"}
    assert all(v for k, v in values.items() if k not in optional)


def test_sample_settings_build_a_valid_config():
    from ingest_core.config import from_env
    from ingest_core.events import LandingPolicy

    values = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    config = from_env(values)
    assert config.allowed_containers() == {"landing"}
    policy = LandingPolicy.from_config(config)
    assert policy.check("http://127.0.0.1:10000/devstoreaccount1/landing/a.csv").accepted


def _requirement_lines(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def test_funcignore_ships_the_app_and_its_package_but_not_the_rest():
    patterns = _requirement_lines((REPO / ".funcignore").read_text())
    for excluded in ("tests", "bench", "local.settings.json", ".venv", "node_modules"):
        assert excluded in patterns, f".funcignore must exclude {excluded}"
    for shipped in ("function_app.py", "host.json", "requirements.txt", "ingest_core"):
        assert not any(Path(shipped).match(p) for p in patterns), f"{shipped} must ship"
