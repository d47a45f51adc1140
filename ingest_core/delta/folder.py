"""What a local table folder holds: a Delta table, a new folder, or something else.

A writer killed before its table's first commit leaves data files (and
object_store's staging copies of them) but no `_delta_log`: such a folder is
still a table in the making, not a user's folder to refuse.
"""

from __future__ import annotations

import re
from pathlib import Path

from ingest_core.config import is_local, local_path
from ingest_core.errors import ConfigurationError

DATA_FILE = re.compile(r"part-\d{5}-[0-9a-f-]{36}-c000(\.\w+)?\.parquet(#\d+)?")
"""delta-rs data files, and object_store's staging copies of them (`<name>#<n>`)."""


def only_write_leftovers(folder: Path) -> bool:
    """Whether a folder holds only what a writer killed before its first commit leaves.

    That is data files, their staging copies, and partition folders (``key=value``) of them.
    Names are judged as listed: a rival still writing renames its staging copies and may
    create `_delta_log` meanwhile, so an entry can be gone by the time it is looked at.
    """
    for entry in folder.iterdir():
        if entry.name == "_delta_log" or DATA_FILE.fullmatch(entry.name):
            continue
        if "=" in entry.name and entry.is_dir() and only_write_leftovers(entry):
            continue
        return False
    return True


def check_table_uri(uri: str) -> None:
    """Refuse local table paths that cannot be a Delta table."""
    if not is_local(uri):
        return
    path = local_path(uri)
    if path.is_file():
        raise ConfigurationError(f"table {uri}: is a file, not a Delta table folder")
    if path.is_dir() and not (path / "_delta_log").is_dir() and not only_write_leftovers(path):
        raise ConfigurationError(
            f"table {uri}: the folder exists, is not empty and holds no _delta_log; "
            "point --table at a Delta table or a new folder"
        )
