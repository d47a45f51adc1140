"""The stages a file goes through, one module each, in protocol order.

fetch (read once, hash) -> claim (ledger row, lease) -> read (decode, transform,
lineage, conform to the table) -> write (`ingest_core.delta.writers`) -> settle
(complete or fail the ledger row; every `IngestResult` is built there).
`IdempotentIngestor` runs them; no stage calls another.
"""
