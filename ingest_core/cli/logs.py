"""The command line's logs: text or JSON lines on stderr, and one line per settled file.

`--log-format json` (INGEST_LOG_FORMAT) writes one JSON object per line; each
settled file is an `ingest_file` line with the fields the Functions app logs
(`ingest_core.functions.log_result`) plus the `run_id` of this invocation.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from ingest_core.results import IngestResult

logger = logging.getLogger("ingest_core.cli")

LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
          "ERROR": logging.ERROR}


class JsonLines(logging.Formatter):
    """One JSON object per record: `ts` (UTC), `level`, `logger`, then the message's fields."""

    converter = staticmethod(time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (a message that is a JSON object is merged in)."""
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name,
        }
        message = record.getMessage()
        try:
            fields = json.loads(message)
        except ValueError:
            fields = None
        line.update(fields if isinstance(fields, dict) else {"message": message})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


HANDLER_NAME = "ingest-cli"


def configure(verbose: int, quiet: bool, fmt: str, level_name: str | None) -> None:
    """Send `ingest_core` logs to stderr: WARNING by default, -v INFO, -vv DEBUG, -q ERROR.

    A flag wins over INGEST_LOG_LEVEL.
    """
    if quiet:
        level = logging.ERROR
    elif verbose:
        level = logging.INFO if verbose == 1 else logging.DEBUG
    else:
        level = LEVELS.get(level_name or "", logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger("ingest_core")
    for old in list(root.handlers):
        if old.get_name() == HANDLER_NAME:  # a previous command's, in the same process
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Records still propagate: a console script's root logger has no handler (so nothing
    # is written twice), and a host that embeds the command line keeps seeing them.


def file_line(result: IngestResult, run_id: str) -> dict[str, Any]:
    """The `ingest_file` fields of one settled file (the Functions app's, with `run_id`)."""
    from ingest_core.events import redact

    line: dict[str, Any] = {
        "event": "ingest_file", "run_id": run_id, "path": redact(result.path),
        "sha256": result.sha256, "status": result.status, "rows": result.rows,
        "duration_s": round(result.duration_s, 3), "delta_version": result.delta_version,
        "size": result.size,
    }
    if result.table:
        line["table"] = redact(result.table)
    if result.error:
        line["error"] = redact(result.error)
    return line


def log_file(result: IngestResult, run_id: str) -> None:
    """Log one settled file: INFO when ingested or skipped, else WARNING."""
    level = logging.INFO if result.status in ("ingested", "skipped") else logging.WARNING
    if logger.isEnabledFor(level):  # the line is built only when someone reads it
        logger.log(level, json.dumps(file_line(result, run_id)))
