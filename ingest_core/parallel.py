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
_in_chunk = False
"""Whether this worker is ingesting a chunk: only then does an interrupt stop it."""
_interrupted = False


def _interrupt_once(signum: int, frame: object) -> None:
    """A worker's first SIGINT/SIGTERM stops the chunk it is ingesting (it gives its claims
    back); later ones (the parent passes Ctrl-C on, the terminal sent it too) are ignored.

    Outside a chunk the worker is in the pool's own code (waiting for work, sending a
    result): an exception there could cut a message to the parent in half and hang the
    pool, so the interrupt is only noted; the parent then shuts the pool down.
    """
    global _interrupted
    if _interrupted:
        return
    _interrupted = True
    if _in_chunk:
        raise KeyboardInterrupt


def _start_worker(config: IngestConfig) -> None:
    global _worker
    signal.signal(signal.SIGINT, _interrupt_once)
    signal.signal(signal.SIGTERM, _interrupt_once)
    from ingest_core.ingestor import IdempotentIngestor

    _worker = IdempotentIngestor(config=config)


def _ingest_chunk(
    files: list[SourceFile], run_id: str | None
) -> tuple[list[IngestResult], bool]:
    """The chunk's settled results, and whether an interrupt stopped it (its claims then
    given back: the files settled before the interrupt are still reported)."""
    from ingest_core.ingestor import IdempotentIngestor

    global _in_chunk
    assert isinstance(_worker, IdempotentIngestor)
    settled: list[IngestResult] = []
    if _interrupted:  # a chunk handed out as the run was interrupted: claim nothing
        return settled, True
    _in_chunk = True
    try:
        _worker.run(files, settled.append, run_id=run_id)
        return settled, False
    except KeyboardInterrupt:
        _worker.give_back_claims(
            "the run was interrupted (SIGINT/SIGTERM) before this file settled; "
            "the next run takes it at once"
        )
        return settled, True
    finally:
        _in_chunk = False


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
        reported: set[Future[tuple[list[IngestResult], bool]]] = set()

        def report(future: Future[tuple[list[IngestResult], bool]]) -> bool:
            """Count a finished chunk's results; whether an interrupt stopped it."""
            reported.add(future)
            results, interrupted = future.result()
            for result in results:
                stats.add(result)
                if on_result is not None:
                    on_result(result)
            return interrupted

        try:
            for future in as_completed(futures):
                if report(future):  # a worker was interrupted on its own: stop the run too
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            # Ctrl-C reaches the workers too; a SIGTERM to this process alone is passed on,
            # so each worker gives its claims back before it stops. Chunks that finished
            # meanwhile, and the files a stopped chunk settled, are still reported, so the
            # run's summary counts them.
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
