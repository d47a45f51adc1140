"""Telemetry: azure-core's per-request log lines are quiet, OpenTelemetry only when configured."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ingest_core import telemetry

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def http_logger_level():
    http = logging.getLogger(telemetry.HTTP_LOGGER)
    saved = http.level
    http.setLevel(logging.NOTSET)
    yield
    http.setLevel(saved)


def _http_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == telemetry.HTTP_LOGGER]


@pytest.mark.azurite
def test_a_real_request_logs_at_info_until_telemetry_is_configured(
    azurite, caplog, http_logger_level
):
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite)
    with caplog.at_level(logging.INFO):
        list(service.list_containers(results_per_page=1))
        assert _http_records(caplog), "azure-core no longer logs requests at INFO"
        caplog.clear()
        assert telemetry.configure_telemetry({}) is False
        list(service.list_containers(results_per_page=1))
    assert _http_records(caplog) == []
    assert logging.getLogger(telemetry.HTTP_LOGGER).level == logging.WARNING


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_"))
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO, env={**environ, **env}, capture_output=True, text=True, timeout=120,
    )


def test_without_a_connection_string_nothing_is_imported():
    done = _run(
        """
        import sys
        from ingest_core.telemetry import configure_telemetry
        assert configure_telemetry() is False
        assert not any(m.startswith(("azure.monitor", "opentelemetry")) for m in sys.modules)
        print("ok")
        """
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_without_the_monitor_extra_it_says_how_to_add_it(monkeypatch, caplog, http_logger_level):
    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "azure.monitor.opentelemetry", None)
    monkeypatch.setattr(telemetry, "_exporting", False)
    with caplog.at_level(logging.INFO, logger="ingest_core.telemetry"):
        exported = telemetry.configure_telemetry(
            {telemetry.CONNECTION_SETTING: "InstrumentationKey=00000000-0000-0000-0000-0000000000"}
        )
    assert exported is False
    assert "ingest-core[monitor]" in caplog.text
    assert "InstrumentationKey" not in caplog.text, "the connection string is not logged"


@pytest.mark.skipif(
    importlib.util.find_spec("azure.monitor.opentelemetry") is None,
    reason="the [monitor] extra is not installed (CI installs it)",
)
def test_with_the_extra_traces_and_metrics_export_but_logs_stay_with_the_host():
    done = _run(
        """
        import logging
        from opentelemetry import metrics, trace
        from ingest_core.telemetry import configure_telemetry
        before = list(logging.getLogger().handlers)
        assert configure_telemetry() is True
        assert configure_telemetry() is True
        assert type(trace.get_tracer_provider()).__module__.startswith("opentelemetry.sdk")
        assert type(metrics.get_meter_provider()).__module__.startswith("opentelemetry.sdk")
        assert logging.getLogger().handlers == before, "logs would be sent twice"
        print("ok")
        """,
        APPLICATIONINSIGHTS_CONNECTION_STRING=(
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            "IngestionEndpoint=http://127.0.0.1:9/"
        ),
        APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL="true",
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
