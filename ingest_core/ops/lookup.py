"""Lookups as operators type them: sha256 prefixes (`status` prints 12 digits) and paths."""

from __future__ import annotations

import re
from collections.abc import Callable

from ingest_core.config import IngestConfig, StorageConfig, is_local, local_path, table_key
from ingest_core.errors import ConfigurationError
from ingest_core.ledger import open_ledger
from ingest_core.sources.identity import path_key

SHA256_PREFIX = re.compile(r"[0-9a-fA-F]{8,64}")
"""A full sha256 or a prefix of one: 8 to 64 hex digits, either case."""


class AmbiguousPrefixError(ConfigurationError):
    """A sha256 prefix matches more than one content in the ledger."""


def expand_sha256(config: IngestConfig, text: str) -> str | None:
    """The full sha256 that `text` (8-64 hex digits) is a prefix of, in the configured table's
    rows (or every table's without one); None when `text` is not hex or nothing matches.

    Raises:
        AmbiguousPrefixError: several contents start with `text`; the message lists them.
    """
    if not SHA256_PREFIX.fullmatch(text):
        return None
    prefix = text.lower()
    ledger = open_ledger(config.resolved_ledger_uri(), config.storage, read_only=True)
    try:
        if len(prefix) == 64:
            return prefix
        table = table_key(config.table_uri) if config.table_uri else None
        matches = sorted({r.sha256 for r in ledger.records(table=table)
                          if r.sha256.startswith(prefix)})
    finally:
        ledger.close()
    if len(matches) > 1:
        shown = "\n  ".join(matches[:20])
        raise AmbiguousPrefixError(
            f"sha256 prefix {prefix} matches {len(matches)} files:\n  {shown}\n"
            "give more digits"
        )
    return matches[0] if matches else None


def path_matcher(text: str, storage: StorageConfig) -> Callable[[str], bool]:
    """A test for recorded paths naming the location `text` names, as the operator typed it.

    Relative and `~` paths are resolved against this process's folder and home;
    abfss://, https:// and Azurite URLs of one blob are one location; and a
    plain `container/name` that is no local file also matches that blob in
    any account.
    """
    wanted = path_key(text, storage)
    bare = text.strip("/")
    blob_suffix = (
        "/" + bare
        if is_local(text) and not text.startswith(("/", "~", ".", "file:"))
        and not local_path(text).exists()
        else None
    )

    def matches(recorded: str) -> bool:
        key = path_key(recorded, storage)
        if key == wanted:
            return True
        return blob_suffix is not None and not is_local(recorded) and key.endswith(blob_suffix) \
            and key.count("/") == bare.count("/") + 1

    return matches
