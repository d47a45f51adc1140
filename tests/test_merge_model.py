"""Merge mode against a model of "the last version of each key", under any redelivery order.

Hypothesis draws change-feed files (key, sequence, operation) and an order of
delivery in which every file comes at least once and some come again. The
files go through a real `IdempotentIngestor` in merge mode into a local Delta
table; the table must then equal the model: files applied once each, in the
order they first arrived, each file reduced to its last version of each key
(highest sequence, then last row); a version replaces the stored one when its
sequence is greater or equal, and a delete removes it. Redeliveries change
nothing. When every version of a key has its own sequence and nothing is
deleted, the result must not depend on the order at all: each key holds its
highest sequence.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_core import IdempotentIngestor
from ingest_core.delta import app_id

Row = tuple[int, int, str]
"""(key, sequence, op)"""

rows = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.sampled_from("IUD")),
                min_size=1, max_size=5)


@st.composite
def feeds(draw: st.DrawFn) -> tuple[list[list[Row]], list[int], bool, bool]:
    """Files, an order of delivery (each file at least once), and the merge options."""
    files = draw(st.lists(rows, min_size=1, max_size=4))
    first = draw(st.permutations(range(len(files))))
    again = draw(st.lists(st.integers(0, len(files) - 1), max_size=4))
    order = list(first)
    for index in again:
        order.insert(draw(st.integers(0, len(order))), index)
    return files, order, draw(st.booleans()), draw(st.booleans())


def model(
    files: list[list[Row]], order: list[int], sequence: bool, deletes: bool
) -> dict[int, tuple[int, str]]:
    """key -> (sequence, writer) by the rules: each file once, in first-arrival order."""
    table: dict[int, tuple[int, str]] = {}
    seen: list[int] = []
    for index in order:
        if index in seen:
            continue
        seen.append(index)
        last: dict[int, tuple[int, int, str]] = {}
        for position, (key, seq, op) in enumerate(files[index]):
            rank = (seq if sequence else 0, position)
            if key not in last or rank >= last[key][:2]:
                last[key] = (*rank, op)
        for key, (seq, _, op) in last.items():
            stored = table.get(key)
            newer = stored is None or not sequence or seq >= stored[0]
            if deletes and op == "D":
                if stored is not None and newer:
                    del table[key]
            elif newer:
                table[key] = (seq, f"f{index}")
    return table


def write(folder: Path, index: int, content: list[Row]) -> str:
    keys, seqs, ops = zip(*content, strict=True)
    path = folder / f"f{index}.parquet"
    pq.write_table(pa.table({
        "id": pa.array(keys, pa.int64()), "seq": pa.array(seqs, pa.int64()),
        "op": pa.array(ops), "file": pa.array([f"f{index}"] * len(keys)),
    }), path)
    return str(path)


@pytest.fixture(autouse=True)
def _no_ingest_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feeds())
def test_the_table_is_the_last_version_of_each_key_whatever_the_redelivery_order(
    drawn: tuple[list[list[Row]], list[int], bool, bool],
) -> None:
    files, order, sequence, deletes = drawn
    work = Path(tempfile.mkdtemp(prefix="merge-model-"))
    try:
        (work / "landing").mkdir()
        paths = [write(work / "landing", i, c) for i, c in enumerate(files)]
        options = {"mode": "merge", "merge_keys": ("id",),
                   "merge_sequence": "seq" if sequence else None,
                   "merge_delete_when": "op = 'D'" if deletes else None}
        with IdempotentIngestor(table=str(work / "lake"), **options) as ing:
            statuses = [ing.ingest_file(paths[i]).status for i in order]
        assert statuses.count("ingested") == len(files)
        assert statuses.count("skipped") == len(order) - len(files)
        log = DeltaTable(str(work / "lake"))
        for path in paths:  # even a file that changed no row: its id guards a redelivery
            sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            assert log.transaction_version(app_id(sha)) == 1, f"no commit carries {path}"
        data = DeltaTable(str(work / "lake")).to_pyarrow_table(
            columns=["id", "seq", "file", "_ingest_file"]).to_pylist()
        assert len({r["id"] for r in data}) == len(data), "a key is stored twice"
        got = {r["id"]: (r["seq"], r["file"]) for r in data}
        expected = model(files, order, sequence, deletes)
        if not sequence:
            got = {k: (0, f) for k, (_, f) in got.items()}
        assert got == expected
        assert all(Path(r["_ingest_file"]).stem == r["file"] for r in data)  # the last writer
        versions = [(k, s) for content in files for k, s, _ in content]
        if sequence and not deletes and len(set(versions)) == len(versions):
            highest: dict[int, int] = {}
            for key, seq in versions:
                highest[key] = max(seq, highest.get(key, seq))
            assert {k: s for k, (s, _) in got.items()} == highest
    finally:
        shutil.rmtree(work, ignore_errors=True)
