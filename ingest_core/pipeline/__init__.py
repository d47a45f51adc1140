"""The stages a file goes through, one module each, in protocol order.

fetch (read once, hash) -> claim (ledger row, lease) -> read (decode,
transform, lineage, conform to the table) -> commit (the guard and the
`ingest_core.delta.writers`; on the event path `group`: stage, then one commit
for many invocations) -> settle (complete or fail the ledger row; every
`IngestResult` is built there). `work.py` is what travels between them.
`IdempotentIngestor` runs them; no stage calls a later one.
"""
