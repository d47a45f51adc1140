"""`python -m ingest_core.cli`."""

from ingest_core.cli import main

main()
