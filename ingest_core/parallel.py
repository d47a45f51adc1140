"""Run an ingestion over several worker processes (spawned: deltalake deadlocks after fork)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

from ingest_core.config import IngestConfig
from ingest_core.results import IngestResult, RunStats
from ingest_core.sources import SourceFile

_worker: object = None


def _start_worker(config: IngestConfig) -> None:
    global _worker
    from ingest_core.ingestor import IdempotentIngestor

    _worker = IdempotentIngestor(config=config)


def _ingest_chunk(files: list[SourceFile], run_id: str | None) -> list[IngestResult]:
    from ingest_core.ingestor import IdempotentIngestor

    assert isinstance(_worker, IdempotentIngestor)
    return _worker.run(files, run_id=run_id).files


def run_parallel(
    config: IngestConfig,
    files: list[SourceFile],
    on_result: Callable[[IngestResult], None] | None = None,
    run_id: str | None = None,
) -> RunStats:
    """Ingest `files` with `config.workers` processes; chunks of at most one batch each.

    Every worker writes `run_id` (one run across the processes).
    """
    workers = max(1, min(config.workers, len(files)))
    chunk = max(1, min(config.batch_files, -(-len(files) // workers)))
    stats = RunStats(run_id=run_id)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(config,)
    ) as pool:
        futures = [
            pool.submit(_ingest_chunk, files[i : i + chunk], run_id)
            for i in range(0, len(files), chunk)
        ]
        for future in as_completed(futures):
            for result in future.result():
                stats.add(result)
                if on_result is not None:
                    on_result(result)
    return stats
