"""The `ingest` command line: parse, build the config, call the core, report."""

from ingest_core.cli import ingest_commands as _ingest_commands  # noqa: F401 - registers commands
from ingest_core.cli import ops_commands as _ops_commands  # noqa: F401 - registers commands
from ingest_core.cli import poison_commands as _poison_commands  # noqa: F401 - registers commands
from ingest_core.cli import reconcile_commands as _reconcile  # noqa: F401 - registers commands
from ingest_core.cli import routes_commands as _routes_commands  # noqa: F401 - registers commands
from ingest_core.cli.app import EXIT_FILES_NOT_DONE, EXIT_OK, EXIT_USAGE, cli, main, run_cli
from ingest_core.cli.help_env import annotate_env_vars

annotate_env_vars(cli)

__all__ = ["EXIT_FILES_NOT_DONE", "EXIT_OK", "EXIT_USAGE", "cli", "main", "run_cli"]
