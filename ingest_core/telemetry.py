"""Telemetry of the Functions app: quiet HTTP logs, OpenTelemetry to Application Insights.

azure-core logs every HTTP request and response at INFO through
`azure.core.pipeline.policies.http_logging_policy`, and host.json categories
do not filter a Python logger: an ingestion of one blob writes dozens of such
lines. `configure_telemetry` sets that logger to WARNING and, when
`APPLICATIONINSIGHTS_CONNECTION_STRING` is set and the `[monitor]` extra
(azure-monitor-opentelemetry) is installed, exports traces and metrics with
OpenTelemetry. Call it once where the app starts; nothing here is imported
until then.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

HTTP_LOGGER = "azure.core.pipeline.policies.http_logging_policy"
CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
LOGS_EXPORTER_SETTING = "OTEL_LOGS_EXPORTER"

logger = logging.getLogger("ingest_core.telemetry")

_exporting = False


def quiet_http_logging(level: int = logging.WARNING) -> None:
    """Log azure-core's per-request lines only at `level` and above (WARNING by default)."""
    logging.getLogger(HTTP_LOGGER).setLevel(level)


def configure_telemetry(environ: Mapping[str, str] | None = None) -> bool:
    """Quiet azure-core's HTTP logs; export OpenTelemetry when Application Insights is set.

    Returns True when OpenTelemetry exports (now or from an earlier call in
    this process). Without `APPLICATIONINSIGHTS_CONNECTION_STRING` nothing is
    imported. Without the `[monitor]` extra, one INFO line says how to add it.
    Logs are not exported this way: the Functions host already sends the
    app's log lines to Application Insights, and a second path would write
    each line twice. azure-monitor-opentelemetry 1.8 ignores its
    `disable_logging` argument and reads `OTEL_LOGS_EXPORTER` instead, so that
    is set to `none` unless already set (set it yourself to export logs). With
    Entra authentication, the exporter reads
    `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` itself.
    """
    global _exporting
    quiet_http_logging()
    env = os.environ if environ is None else environ
    connection_string = env.get(CONNECTION_SETTING, "").strip()
    if _exporting or not connection_string:
        return _exporting
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
    except ImportError:
        logger.info(
            "%s is set but azure-monitor-opentelemetry is not installed: no OpenTelemetry "
            "export; install ingest-core[monitor] (add azure-monitor-opentelemetry to "
            "pyproject's dependencies for the Functions build) to export traces and metrics",
            CONNECTION_SETTING,
        )
        return False
    os.environ.setdefault(LOGS_EXPORTER_SETTING, "none")
    configure_azure_monitor(connection_string=connection_string)
    _exporting = True
    return True
