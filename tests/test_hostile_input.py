"""Hostile input: every bad file gets a clear error naming it and a failed or quarantined
ledger row, the run goes on with the other files, and nothing else is lost. Bad
configuration (a table or ledger that cannot be reached) stops with exit 2 and
leaves nothing half-written. On both ledgers.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from exactly_once import ledger_uri
from helpers import id_counts, read_table, run_cli, write_text

from ingest_core import IdempotentIngestor, StorageConfig
from ingest_core.ledger import FAILED, QUARANTINED, SUCCEEDED
from ingest_core.ledger.base import unread_key

SEED = "id,amount\n1,1.5\n2,2.5\n"
GOOD = "id,amount\n3,3.5\n4,4.5\n"


def parquet_bytes() -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(100, 200)), "amount": [0.5] * 100}), out)
    return out.getvalue()


class Lake:
    """A landing folder, a table seeded with ids 1-2, and a ledger of one kind."""

    def __init__(self, tmp_path: Path, ledger: str, connection: str | None) -> None:
        self.landing = tmp_path / "landing"
        self.landing.mkdir()
        self.table = str(tmp_path / "lake" / "orders")
        self.ledger = ledger
        self.connection = connection
        seed = write_text(tmp_path / "seed" / "seed.csv", SEED)
        with self.ingestor() as ing:
            assert ing.ingest_file(str(seed)).status == "ingested"

    def ingestor(self) -> IdempotentIngestor:
        storage = StorageConfig(connection_string=self.connection)
        return IdempotentIngestor(table=self.table, ledger=self.ledger, storage=storage)

    def run(self, roots: list[str] | None = None):
        """Ingest the landing folder; the results by file name and the ledger rows by path."""
        with self.ingestor() as ing:
            stats = ing.ingest_sources(roots or [str(self.landing)])
            rows = {r.path: r for r in ing.ledger.records(table=ing.table)}
        return {Path(r.path).name: r for r in stats.files}, rows

    def ids(self) -> Counter[int]:
        return Counter(read_table(self.table).column("id").to_pylist())


@pytest.fixture(params=["sqlite", pytest.param("azure_table", marks=pytest.mark.azurite)])
def lake(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Lake:
    connection = request.getfixturevalue("azurite") if request.param == "azure_table" else None
    return Lake(tmp_path, ledger_uri(request.param, tmp_path, unique_name), connection)


def _big_single_line_json(path: Path) -> None:
    with open(path, "w") as out:
        out.write('{"id": 9, "blob": "' + "x" * 100_000_000 + '"}\n')


HOSTILE = {
    # name: (how to write it, outcome, what the error says besides the path)
    "empty.csv": (lambda p: p.write_bytes(b""), QUARANTINED, "empty (0 bytes)"),
    "truncated.parquet": (
        lambda p: p.write_bytes(parquet_bytes()[:300]), QUARANTINED, "not readable as parquet"
    ),
    "parquet-named.csv": (
        lambda p: p.write_bytes(parquet_bytes()), QUARANTINED, "the bytes are parquet"
    ),
    "ragged.csv": (
        lambda p: p.write_text("id,amount\n5,1.5\n6,2.5,surprise\n7\n"), QUARANTINED,
        "Expected 2 columns",
    ),
    "latin1.csv": (
        lambda p: p.write_bytes("id,name\n8,café\n".encode("latin-1")), QUARANTINED,
        "not valid UTF-8",
    ),
    "types.csv": (
        lambda p: p.write_text("id,amount\nnot-a-number,1.5\n"), QUARANTINED,
        "column 'id' holds string values that do not fit the table's int64",
    ),
    "one-line-100MB.json": (_big_single_line_json, QUARANTINED, "not readable as jsonl"),
}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if "100MB" in n else n for n in HOSTILE],
)
def test_hostile_file_is_quarantined_by_name_and_the_run_goes_on(lake: Lake, name: str):
    write, outcome, says = HOSTILE[name]
    write(lake.landing / name)
    write_text(lake.landing / "zz-good.csv", GOOD)
    results, rows = lake.run()

    bad = results[name]
    assert bad.status == outcome
    assert str(lake.landing / name) in bad.error and says in bad.error, bad.error
    row = rows[str(lake.landing / name)]
    assert (row.status, row.error, row.sha256) == (outcome, bad.error, bad.sha256)
    assert results["zz-good.csv"].status == "ingested"
    assert lake.ids() == Counter([1, 2, 3, 4])

    again, _ = lake.run()
    assert (again[name].status, again["zz-good.csv"].status) == (QUARANTINED, "skipped")
    assert lake.ids() == Counter([1, 2, 3, 4])


def test_file_deleted_between_listing_and_reading_gets_a_failed_row_under_its_path(lake: Lake):
    gone = write_text(lake.landing / "gone.csv", "id,amount\n5,5.5\n")
    write_text(lake.landing / "zz-good.csv", GOOD)
    with lake.ingestor() as ing:
        files = ing.list_sources([str(lake.landing)])
        gone.unlink()
        stats = ing.run(files)
        row = ing.ledger.get(ing.table, unread_key(str(gone)))
    results = {Path(r.path).name: r for r in stats.files}
    assert results["gone.csv"].status == FAILED
    says = f"{gone} disappeared before it could be read; nothing to ingest"
    assert results["gone.csv"].error == says
    assert row is not None
    assert (row.status, row.path, row.error) == (FAILED, str(gone), results["gone.csv"].error)
    assert results["zz-good.csv"].status == "ingested"
    assert lake.ids() == Counter([1, 2, 3, 4])

    write_text(gone, "id,amount\n5,5.5\n")  # it comes back: ingested under its content key
    results, _ = lake.run()
    assert results["gone.csv"].status == "ingested"
    assert lake.ids() == Counter([1, 2, 3, 4, 5])


AWKWARD_NAMES = [
    "it's \"quoted\".csv",
    "with  spaces .csv",
    "ünïcödé 日本 😀.csv",
    "hash#1.csv",
    "what?.csv",
    "100% sure %41.csv",
]


def test_awkward_paths_are_ingested_and_recorded_as_they_are(lake: Lake):
    folder = lake.landing / "we ird#?%"
    for i, name in enumerate(AWKWARD_NAMES):
        write_text(folder / name, f"id,amount\n{10 + i},1.0\n")
    dotted = str(lake.landing / "we ird#?%" / ".." / "we ird#?%")
    results, rows = lake.run([dotted])
    assert {n: r.status for n, r in results.items()} == dict.fromkeys(AWKWARD_NAMES, "ingested")
    expected = {str((folder / n).resolve()) for n in AWKWARD_NAMES}
    assert {p for p, r in rows.items() if r.status == SUCCEEDED} >= expected
    lineage = set(read_table(lake.table).column("_ingest_file").to_pylist())
    assert expected <= lineage
    assert lake.ids() == Counter([1, 2, *range(10, 10 + len(AWKWARD_NAMES))])
    again, _ = lake.run([dotted])
    assert {r.status for r in again.values()} == {"skipped"}


# -- Blob Storage ------------------------------------------------------------------------


@pytest.fixture
def blobs(azurite: str, unique_name: str):
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite)
    container = service.create_container(f"{unique_name}-landing")
    yield container
    container.delete_container()


@pytest.mark.azurite
def test_awkward_blob_names_are_ingested_and_recorded_as_urls(blobs, azurite, tmp_path):
    from ingest_core.azure.urls import parse_blob_url

    for i, name in enumerate(AWKWARD_NAMES):
        blobs.upload_blob(f"raw/we ird#?%/{name}", f"id,amount\n{10 + i},1.0\n".encode())
    root = f"abfs://{blobs.container_name}/raw/"
    lake = Lake(tmp_path, "azure-table://" + blobs.container_name.replace("-", ""), azurite)
    results, rows = lake.run([root])
    assert [r.status for r in results.values()] == ["ingested"] * len(AWKWARD_NAMES)
    names = {parse_blob_url(p).name for p, r in rows.items() if r.path.startswith("abfs://")}
    assert names == {f"raw/we ird#?%/{n}" for n in AWKWARD_NAMES}
    assert lake.ids() == Counter([1, 2, *range(10, 10 + len(AWKWARD_NAMES))])
    again, _ = lake.run([root])
    assert {r.status for r in again.values()} == {"skipped"}


@pytest.mark.azurite
def test_blob_deleted_between_listing_and_reading_gets_a_failed_row(blobs, azurite, tmp_path):
    blobs.upload_blob("raw/gone.csv", b"id,amount\n5,5.5\n")
    blobs.upload_blob("raw/zz-good.csv", GOOD.encode())
    lake = Lake(tmp_path, "azure-table://" + blobs.container_name.replace("-", ""), azurite)
    with lake.ingestor() as ing:
        files = ing.list_sources([f"abfs://{blobs.container_name}/raw/"])
        blobs.delete_blob("raw/gone.csv")
        stats = ing.run(files)
        gone = next(r for r in stats.files if r.path.endswith("gone.csv"))
        row = ing.ledger.get(ing.table, unread_key(gone.path))
    assert gone.status == FAILED and "disappeared before it could be read" in gone.error
    assert gone.path in gone.error
    assert row is not None and (row.status, row.error) == (FAILED, gone.error)
    assert Counter(r.status for r in stats.files) == {FAILED: 1, "ingested": 1}
    assert lake.ids() == Counter([1, 2, 3, 4])


@pytest.mark.slow
@pytest.mark.azurite
def test_blob_overwritten_mid_read_gets_a_failed_row_and_the_run_goes_on(
    blobs, azurite, tmp_path, monkeypatch
):
    from test_azure_blob_source import overwrite_once_reading_starts

    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    big = b"id,amount\n" + b"".join(b"%d,1.5\n" % i for i in range(100, 6_000_000))
    blobs.upload_blob("raw/a-big.csv", big)
    blobs.upload_blob("raw/zz-good.csv", GOOD.encode())
    lake = Lake(tmp_path, "azure-table://" + blobs.container_name.replace("-", ""), azurite)
    overwrite = lambda: blobs.upload_blob("raw/a-big.csv", b"id,amount\n7,1.0\n", overwrite=True)  # noqa: E731
    with overwrite_once_reading_starts(spool, overwrite), lake.ingestor() as ing:
        stats = ing.ingest_directory(f"abfs://{blobs.container_name}/raw/")
        big_result = next(r for r in stats.files if r.path.endswith("a-big.csv"))
        row = ing.ledger.get(ing.table, unread_key(big_result.path))
    assert big_result.status == FAILED
    assert f"{big_result.path} was overwritten while it was being read" in big_result.error
    assert row is not None and (row.status, row.error) == (FAILED, big_result.error)
    assert Counter(r.status for r in stats.files) == {FAILED: 1, "ingested": 1}
    assert lake.ids() == Counter([1, 2, 3, 4])


# -- events ------------------------------------------------------------------------------


def test_event_for_a_blob_in_another_account_is_refused_before_any_fetch():
    from ingest_core.events import LandingPolicy, build_blob_created, screen_event

    policy = LandingPolicy(
        endpoint="https://landingacct.blob.core.windows.net", containers=frozenset({"landing"})
    )
    mine = build_blob_created(
        "https://landingacct.blob.core.windows.net/landing/a.csv", content_length=10
    )
    assert screen_event(mine, policy).accepted
    for url in (
        "https://evilacct.blob.core.windows.net/landing/a.csv",
        "https://landingacct.blob.core.windows.net.evil.example/landing/a.csv",
        "https://landingacct.blob.core.windows.net/landing/raw/../../other/a.csv",
    ):
        verdict = screen_event(build_blob_created(url, content_length=10), policy)
        assert verdict.decision == "refuse" and verdict.url is None, url
        assert url.split("//", 1)[1].split("/", 1)[0] in verdict.reason


# -- configuration -----------------------------------------------------------------------


@pytest.mark.azurite
def test_table_in_a_container_that_does_not_exist_exits_2_and_gives_its_claims_back(
    azurite, unique_name, tmp_path
):
    write_text(tmp_path / "landing" / "a.csv", GOOD)
    table = f"abfs://{unique_name}-missing/orders"
    ledger = f"azure-table://{unique_name}ledger"
    env = {"INGEST_STORAGE_CONNECTION": azurite}
    result = run_cli("run", str(tmp_path / "landing"), "--table", table, "--ledger", ledger,
                     "--json", env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"ingest: error: table {table}: its container does not exist; "
        "create it or fix the table URI"
    ]
    status = json.loads(run_cli("status", "--ledger", ledger, "--json", env=env).stdout)
    assert [(r["status"], r["owner"]) for r in status] == [(FAILED, None)]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("azure_table", marks=pytest.mark.azurite)])
def test_unreachable_ledger_exits_2_and_writes_nothing(kind, request, tmp_path, unique_name):
    write_text(tmp_path / "landing" / "a.csv", GOOD)
    table = tmp_path / "lake" / "orders"
    env = {}
    if kind == "sqlite":
        ledger = "sqlite:////proc/no-such-dir/ledger.sqlite"
        says = "cannot open the SQLite ledger /proc/no-such-dir/ledger.sqlite"
    else:
        request.getfixturevalue("azurite")
        ledger = f"azure-table://{unique_name}ledger"
        env["INGEST_STORAGE_CONNECTION"] = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
        )
        says = "cannot reach the Azure Table ledger"
    result = run_cli("run", str(tmp_path / "landing"), "--table", str(table), "--ledger", ledger,
                     env=env)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("ingest: error: ") and says in line, line
    assert not table.exists() and not os.path.exists(str(table) + ".ledger.sqlite")


def test_a_source_holding_the_table_never_ingests_the_tables_own_files(tmp_path: Path):
    root = tmp_path / "r"
    write_text(root / "orders.csv", "id,amount\n1,1.5\n2,2.5\n3,3.5\n")
    table = str(root / "lake" / "orders")
    for _ in range(3):
        done = run_cli("run", str(root), "--table", table, "--json")
        assert done.returncode == 0, done.stderr
    assert sum(id_counts(table).values()) == 3  # not the table's parquet files, nor its ledger


def test_a_source_inside_the_table_exits_2(tmp_path: Path):
    write_text(tmp_path / "in" / "a.csv", "id\n1\n")
    table = str(tmp_path / "lake" / "t")
    assert run_cli("run", str(tmp_path / "in"), "--table", table).returncode == 0
    inside = run_cli("run", table, "--table", table)
    assert inside.returncode == 2
    assert "is inside the Delta table" in inside.stderr and "Traceback" not in inside.stderr


def test_dangling_and_looping_links_are_reported_and_the_run_goes_on(tmp_path: Path):
    landing = tmp_path / "landing"
    write_text(landing / "good.csv", "id\n1\n")
    os.symlink(landing / "nowhere.csv", landing / "dangling.csv")
    os.symlink(landing / "loop.csv", landing / "loop.csv")
    done = run_cli("run", str(landing), "--table", str(tmp_path / "lake" / "t"), "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    by_name = {Path(f["path"]).name: f for f in report["files"]}
    assert by_name["good.csv"]["status"] == "ingested"
    assert by_name["dangling.csv"]["status"] == by_name["loop.csv"]["status"] == "failed"
    assert "Traceback" not in done.stderr
