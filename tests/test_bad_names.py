"""Names that cannot be recorded, and links to nothing (issue 13, row 10).

A file name whose bytes are not UTF-8 cannot go into the ledger, the lineage
column or the Delta log: it is reported, by an escaped name and the fix, and
never claimed; a dangling link is reported as such. The run goes on with the
other files (exit 1), with no traceback and nothing left `processing`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import id_counts, run_cli, write_text

from ingest_core.ledger.sqlite import SqliteLedger


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    write_text(folder / "a.csv", "id\n1\n")
    write_text(folder / "c.csv", "id\n3\n")
    try:
        with open(os.fsencode(folder) + b"/b\xff.csv", "wb") as bad:
            bad.write(b"id\n2\n")
    except OSError:  # a file system that refuses such names cannot hold one
        pytest.skip("this file system refuses names that are not UTF-8")
    os.symlink(tmp_path / "nowhere.csv", folder / "link.csv")
    return folder


def test_a_bad_name_and_a_dangling_link_are_reported_and_the_run_goes_on(
    tmp_path: Path, landing: Path
) -> None:
    table = str(tmp_path / "lake" / "orders")
    for _ in range(2):  # the second run: the good files skipped, the bad ones reported again
        done = run_cli("run", str(landing), "--table", table, "--json")
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and "UnicodeEncodeError" not in done.stderr
        report = json.loads(done.stdout)
        by_name = {Path(f["path"]).name: f for f in report["files"]}
        assert by_name["b\\xff.csv"]["status"] == "failed"
        assert "not valid UTF-8" in by_name["b\\xff.csv"]["error"]
        assert "rename" in by_name["b\\xff.csv"]["error"]
        assert by_name["link.csv"]["status"] == "failed"
        assert "is a link to" in by_name["link.csv"]["error"]
        assert {by_name["a.csv"]["status"], by_name["c.csv"]["status"]} <= {"ingested", "skipped"}
    assert id_counts(table) == {1: 1, 3: 1}
    rows = SqliteLedger(table + ".ledger.sqlite").records()
    assert "processing" not in {r.status for r in rows}
    assert not any("\\xff" in r.path for r in rows)


def test_the_text_summary_names_the_bad_entry(tmp_path: Path, landing: Path) -> None:
    done = run_cli("run", str(landing), "--table", str(tmp_path / "lake" / "t"))
    assert done.returncode == 1
    assert "b\\xff.csv: the file name is not valid UTF-8" in done.stderr
    assert "Traceback" not in done.stderr
