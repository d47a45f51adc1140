"""Run an ingestion over several worker processes (spawned: deltalake deadlocks after fork)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed, wait

from ingest_core.config import IngestConfig
from ingest_core.results import IngestResult, RunStats
from ingest_core.sources import SourceFile

_worker: object = None


def _interrupt_once(signum: int, frame: object) -> None:
    """A worker's first SIGINT/SIGTERM interrupts it; later ones (the parent passes Ctrl-C on,
    the terminal sent it too) are ignored while it gives its claims back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _start_worker(config: IngestConfig) -> None:
    global _worker
    signal.signal(signal.SIGINT, _interrupt_once)
    signal.signal(signal.SIGTERM, _interrupt_once)
    from ingest_core.ingestor import IdempotentIngestor

    _worker = IdempotentIngestor(config=config)


def _ingest_chunk(files: list[SourceFile], run_id: str | None) -> list[IngestResult]:
    from ingest_core.ingestor import IdempotentIngestor

    assert isinstance(_worker, IdempotentIngestor)
    try:
        return _worker.run(files, run_id=run_id).files
    except KeyboardInterrupt:
        _worker.give_back_claims(
            "the run was interrupted (SIGINT/SIGTERM) before this file settled; "
            "the next run takes it at once"
        )
        raise


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
        reported: set[Future[list[IngestResult]]] = set()

        def report(future: Future[list[IngestResult]]) -> None:
            reported.add(future)
            for result in future.result():
                stats.add(result)
                if on_result is not None:
                    on_result(result)

        try:
            for future in as_completed(futures):
                report(future)
        except KeyboardInterrupt:
            # Ctrl-C reaches the workers too; a SIGTERM to this process alone is passed on,
            # so each worker gives its claims back before it stops. Chunks that finished
            # meanwhile are still reported, so the run's summary counts them.
            for future in futures:
                future.cancel()
            for process in list(getattr(pool, "_processes", {}).values()):
                with contextlib.suppress(OSError):
                    os.kill(process.pid, signal.SIGINT)
            wait([f for f in futures if not f.cancelled()], timeout=60)
            for future in futures:
                if (
                    future not in reported and future.done() and not future.cancelled()
                    and future.exception() is None
                ):
                    report(future)
            raise
    return stats
