"""The `ingest` command line runs Arrow on jemalloc, freed pages handed back at once
(lower peak memory on large text files), unless the user chose an allocator."""

from __future__ import annotations

from pathlib import Path

from helpers import run_cli, write_text

PROBE = '''
import pathlib
import pyarrow as pa

def record(data):
    pathlib.Path(__file__).with_name("pool.txt").write_text(pa.default_memory_pool().backend_name)
    return data
'''


def _pool_used(tmp_path: Path, monkeypatch, **env: str) -> str:
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    (tmp_path / "probe_pool.py").write_text(PROBE)
    landing = tmp_path / "landing"
    write_text(landing / "a.csv", "id\n1\n")
    done = run_cli("run", str(landing), "--table", str(tmp_path / "lake" / "t"),
                   "--transform", "probe_pool:record", env={"PYTHONPATH": str(tmp_path), **env})
    assert done.returncode == 0, done.stderr
    return (tmp_path / "pool.txt").read_text()


def test_the_command_line_uses_jemalloc(tmp_path: Path, monkeypatch):
    assert _pool_used(tmp_path, monkeypatch) == "jemalloc"


def test_a_pool_the_user_chose_wins(tmp_path: Path, monkeypatch):
    assert _pool_used(tmp_path, monkeypatch, ARROW_DEFAULT_MEMORY_POOL="system") == "system"
