"""`RoutedIngest`: the documented name of a routed `Session` (see `ingest_core.session`)."""

from __future__ import annotations

from ingest_core.config import IngestConfig
from ingest_core.routing import Routes
from ingest_core.session import Session


class RoutedIngest(Session):
    """A `Session` over `routes`: each file into the table its route names.

    Args:
        routes: the parsed routes (`ingest_core.routing.load_routes`).
        config: the run-wide settings (see `Session`).
    """

    def __init__(self, routes: Routes, config: IngestConfig) -> None:
        super().__init__(config, routes)
