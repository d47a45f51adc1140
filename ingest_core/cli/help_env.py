"""Name each option's environment variable in `--help`.

`config.from_env` stays the only reader of the environment; this module only
appends "[env var: NAME]" to the help of every option `from_env` also takes
from a variable, so operators see both ways to set it.
"""

from __future__ import annotations

import click

# The click parameter name of an option -> the variable `from_env` reads for it.
OPTION_ENV_VARS: dict[str, str] = {
    "table_uri": "INGEST_TABLE_URI",
    "ledger_uri": "INGEST_LEDGER_URI",
    "routes_file": "INGEST_ROUTES",
    "fmt": "INGEST_FORMAT",
    "schema_mode": "INGEST_SCHEMA_MODE",
    "transform": "INGEST_TRANSFORM",
    "no_lineage": "INGEST_LINEAGE=false",
    "lease_seconds": "INGEST_LEASE_SECONDS",
    "max_attempts": "INGEST_MAX_ATTEMPTS",
    "batch_files": "INGEST_BATCH_FILES",
    "batch_seconds": "INGEST_BATCH_SECONDS",
    "workers": "INGEST_WORKERS",
    "topic_endpoint": "INGEST_EVENTGRID_TOPIC_ENDPOINT",
    "landing_path": "INGEST_LANDING_PATH",
}


def annotate_env_vars(command: click.Command) -> None:
    """Append the environment variable to the help of every option of `command` and below."""
    for param in command.params:
        var = OPTION_ENV_VARS.get(param.name or "")
        if isinstance(param, click.Option) and var and var not in (param.help or ""):
            param.help = f"{param.help or ''} [env var: {var}]".strip()
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            annotate_env_vars(sub)
