"""Routed runs end to end: one landing zone, several feeds, each into its own Delta table."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from helpers import read_table, run_cli, write_parquet, write_text

from ingest_core import IngestConfig
from ingest_core.routed import RoutedIngest
from ingest_core.routing import UNROUTED_TABLE, parse_routes

ROUTES = """\
# three feeds from one landing zone
[[route]]
name = "by dataset"
match = "{{dataset}}/{{year}}/*.parquet"
table = "{lake}/{{dataset}}"
partition_by = ["year"]

[[route]]
match = "customers/**/*.csv"
table = "{lake}/customers"
format = "csv"

[[route]]
match = "partner-x/returns_*.csv"
table = "{lake}/returns"
lineage = false
"""


def three_feeds(landing: Path) -> None:
    """orders (parquet, by year), customers (csv, any depth), partner-x returns, and a stray."""
    write_parquet(landing / "orders" / "2025" / "a.parquet", start=0, rows=2)
    write_parquet(landing / "orders" / "2026" / "b.parquet", start=10, rows=3)
    write_text(landing / "customers" / "2026" / "q1" / "c.csv", "cid,name\n1,ann\n2,bob\n")
    write_text(landing / "partner-x" / "returns_0101.csv", "rid,qty\n7,5\n")
    write_text(landing / "notes" / "readme.txt", "not data")


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def routes_file(tmp_path: Path, lake: Path) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(ROUTES.format(lake=lake))
    return path


def ledger_rows(ledger: str, *args: str) -> list[dict]:
    result = run_cli("status", "--ledger", ledger, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_three_feeds_go_to_their_tables_and_the_stray_is_unrouted(landing, lake, routes_file):
    three_feeds(landing)
    result = run_cli("run", str(landing), "--routes", str(routes_file), "--json")
    assert result.returncode == 1, result.stderr  # the unrouted file makes the run not clean
    report = json.loads(result.stdout)
    assert (report["ingested"], report["unrouted"], report["failed"], report["rows"]) == (
        4, 1, 0, 8)
    tables = {Path(f["path"]).name: f["table"] for f in report["files"]}
    assert tables == {
        "a.parquet": f"{lake}/orders", "b.parquet": f"{lake}/orders",
        "c.csv": f"{lake}/customers", "returns_0101.csv": f"{lake}/returns", "readme.txt": None,
    }
    stray = next(f for f in report["files"] if f["status"] == "unrouted")
    assert "no route matches 'notes/readme.txt'" in stray["error"] and stray["sha256"]

    assert sorted(read_table(f"{lake}/orders").column("id").to_pylist()) == [0, 1, 10, 11, 12]
    assert read_table(f"{lake}/customers").column("name").to_pylist() == ["ann", "bob"]
    returns = read_table(f"{lake}/returns")
    assert returns.column_names == ["rid", "qty"]  # lineage = false for this route
    assert "_ingest_sha256" in read_table(f"{lake}/customers").column_names

    unrouted = ledger_rows(f"sqlite:///{routes_file}.ledger.sqlite", "--table", UNROUTED_TABLE)
    assert [(r["status"], Path(r["path"]).name) for r in unrouted] == [
        ("quarantined", "readme.txt")]
    assert "no route matches" in unrouted[0]["error"]
    orders = ledger_rows(f"sqlite:///{lake}/orders.ledger.sqlite")
    assert {r["status"] for r in orders} == {"succeeded"} and len(orders) == 2

    again = run_cli("run", str(landing), "--routes", str(routes_file), "--json")
    assert again.returncode == 1
    assert (json.loads(again.stdout)["skipped"], json.loads(again.stdout)["unrouted"]) == (4, 1)
    human = run_cli("run", str(landing), "--routes", str(routes_file))
    assert human.returncode == 1
    assert "unrouted:" in human.stderr and "readme.txt" in human.stderr
    assert "4 skipped, 1 unrouted" in human.stdout


def test_partitioned_target_has_partition_folders_and_values(landing, lake, routes_file):
    three_feeds(landing)
    run_cli("run", str(landing), "--routes", str(routes_file))
    orders = lake / "orders"
    assert sorted(p.name for p in orders.iterdir() if p.is_dir() and p.name != "_delta_log") == [
        "year=2025", "year=2026"]
    assert list(DeltaTable(str(orders)).metadata().partition_columns) == ["year"]
    rows = read_table(str(orders)).to_pylist()
    assert {(r["id"], r["year"], Path(r["_ingest_file"]).parent.name) for r in rows} == {
        (0, "2025", "2025"), (1, "2025", "2025"),
        (10, "2026", "2026"), (11, "2026", "2026"), (12, "2026", "2026"),
    }
    assert list((orders / "year=2026").glob("*.parquet"))


def test_same_bytes_routed_to_two_tables_land_once_in_each(landing, tmp_path, lake):
    body = "id,amount\n1,2.5\n2,3.5\n"
    write_text(landing / "eu" / "sales.csv", body)
    write_text(landing / "us" / "sales.csv", body)
    write_text(landing / "eu" / "sales_copy.csv", body)  # same table, same bytes: a skip
    routes = tmp_path / "routes.toml"
    routes.write_text(f'[[route]]\nmatch = "{{region}}/*.csv"\ntable = "{lake}/{{region}}"\n')
    result = run_cli("run", str(landing), "--routes", str(routes), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["ingested"], report["skipped"]) == (2, 1)
    for region in ("eu", "us"):
        assert sorted(read_table(f"{lake}/{region}").column("id").to_pylist()) == [1, 2]
    assert json.loads(run_cli("run", str(landing), "--routes", str(routes), "--json").stdout)[
        "skipped"] == 3


def test_a_shared_ledger_holds_every_route_and_the_unrouted(landing, lake, routes_file,
                                                           tmp_path):
    three_feeds(landing)
    ledger = f"sqlite:///{tmp_path}/shared.sqlite"
    result = run_cli("run", str(landing), "--routes", str(routes_file), "--ledger", ledger,
                     "--json")
    assert result.returncode == 1
    rows = ledger_rows(ledger)
    assert len(rows) == 5
    assert {r["table"] for r in rows} == {
        str(lake / "orders"), str(lake / "customers"), str(lake / "returns"), UNROUTED_TABLE}
    assert not list(lake.glob("*.ledger.sqlite"))


def test_bad_routes_file_is_refused_with_exit_2_naming_the_line(landing, tmp_path, lake):
    write_parquet(landing / "orders" / "2026" / "a.parquet", start=0)
    routes = tmp_path / "routes.toml"
    routes.write_text(f'[[route]]\nmatch = "{{dataset}}/*.parquet"\ntable = "{lake}/x"\n'
                      'partiton_by = ["year"]\n')
    result = run_cli("run", str(landing), "--routes", str(routes))
    assert result.returncode == 2
    assert f"{routes}:4: route 1: unknown key 'partiton_by'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not lake.exists()

    check = run_cli("routes", "check", str(routes))
    assert check.returncode == 2 and f"{routes}:4:" in check.stderr
    as_json = run_cli("routes", "check", str(routes), "--json")
    assert as_json.returncode == 2
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["problems"][0]["line"] == 4

    routes.write_text('[[route]]\nmatch = "a"\ntable = "./t"\nformat = \n')
    syntax = run_cli("run", str(landing), "--routes", str(routes))
    assert syntax.returncode == 2 and f"{routes}:4: not TOML" in syntax.stderr


def test_routes_check_lists_a_valid_file(routes_file, lake):
    result = run_cli("routes", "check", str(routes_file))
    assert result.returncode == 0, result.stderr
    assert "route 1 'by dataset' (line 2): {dataset}/{year}/*.parquet" in result.stdout
    assert "3 routes, no problems" in result.stdout
    report = json.loads(run_cli("routes", "check", str(routes_file), "--json").stdout)
    assert report["ok"] and [r["line"] for r in report["routes"]] == [2, 8, 13]
    assert report["routes"][0]["captures"] == ["dataset", "year"]


def test_explain_says_which_route_a_path_takes_and_why(routes_file, lake):
    result = run_cli("routes", "explain", "customers/2026/q1/c.csv", "--routes", str(routes_file))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "route 1 'by dataset' (line 2)" in lines[1] and "no: the path has 4 segments" in lines[1]
    assert "route 2 (line 8)" in lines[2] and "matches" in lines[2]
    assert "1 later routes not tried" in lines[3]
    assert lines[-1] == f"-> {lake}/customers"

    unrouted = run_cli("routes", "explain", "notes/readme.txt", "--routes", str(routes_file))
    assert unrouted.returncode == 1 and "unrouted: no route matches" in unrouted.stdout

    as_json = run_cli("routes", "explain", "orders/2026/b.parquet", "--json",
                      env={"INGEST_ROUTES": str(routes_file)})
    report = json.loads(as_json.stdout)
    assert report["routed"] and report["table"] == f"{lake}/orders"
    assert report["captures"] == {"dataset": "orders", "year": "2026"}
    assert report["columns"] == {"year": "2026"}


def test_run_needs_a_table_or_routes_but_not_both(landing, routes_file, tmp_path):
    write_parquet(landing / "a.parquet", start=0)
    neither = run_cli("run", str(landing))
    assert neither.returncode == 2 and "--routes FILE" in neither.stderr
    both = run_cli("run", str(landing), "--routes", str(routes_file), "--table",
                   str(tmp_path / "t"))
    assert both.returncode == 2 and "not both" in both.stderr
    missing = run_cli("run", str(landing), "--routes", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "nope.toml" in missing.stderr


def test_routes_as_toml_text_in_the_environment(landing, lake, tmp_path):
    write_text(landing / "eu" / "sales.csv", "id\n1\n")
    text = f'[[route]]\nmatch = "{{region}}/*.csv"\ntable = "{lake}/{{region}}"\n'
    no_ledger = run_cli("run", str(landing), "--json", env={"INGEST_ROUTES": text})
    assert no_ledger.returncode == 2 and "INGEST_LEDGER_URI" in no_ledger.stderr
    ledger = f"sqlite:///{tmp_path}/shared.sqlite"
    result = run_cli("run", str(landing), "--json",
                     env={"INGEST_ROUTES": text, "INGEST_LEDGER_URI": ledger})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"][0]["table"] == f"{lake}/eu"
    # a --table flag wins over routes from the environment
    flag = run_cli("run", str(landing), "--table", str(tmp_path / "t"), "--json",
                   env={"INGEST_ROUTES": text})
    assert flag.returncode == 0 and json.loads(flag.stdout)["files"][0]["table"] is None


def test_a_capture_that_is_also_a_data_column_quarantines_the_file(landing, lake, tmp_path):
    write_text(landing / "2026" / "a.csv", "id,year\n1,1999\n")
    routes = tmp_path / "routes.toml"
    routes.write_text(f'[[route]]\nmatch = "{{year}}/*.csv"\ntable = "{lake}/t"\n'
                      'partition_by = ["year"]\n')
    result = run_cli("run", str(landing), "--routes", str(routes), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["quarantined"] == 1
    assert "is both in the file and a route capture" in report["files"][0]["error"]


def test_library_api_routes_one_file(landing, lake, routes_file):
    three_feeds(landing)
    config = IngestConfig(table_uri="")
    with RoutedIngest(parse_routes(routes_file.read_text(), str(routes_file)), config) as routed:
        files = routed.list_sources([str(landing)])
        plan = routed.plan(files)
        assert len(plan) == 5 and [Path(f.uri).name for f in plan.unrouted] == ["readme.txt"]
        one = next(f for f in files if f.uri.endswith("b.parquet"))
        result = routed.ingest_one(one)
    assert (result.status, result.rows, result.table) == ("ingested", 3, f"{lake}/orders")
    assert read_table(f"{lake}/orders").column("year").to_pylist() == ["2026"] * 3


# -- Azurite: Blob source, Azure Table ledger, tables at abfs:// ------------------------------


def parquet_bytes(start: int, rows: int) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(start, start + rows))}), out)
    return out.getvalue()


@pytest.mark.azurite
def test_three_feeds_and_an_unrouted_blob_on_azurite(azurite, unique_name):
    from azure.storage.blob import BlobServiceClient

    from ingest_core import StorageConfig
    from ingest_core.azure.auth import delta_storage_options

    service = BlobServiceClient.from_connection_string(azurite)
    landing_name, lake_name = f"{unique_name}-landing", f"{unique_name}-lake"
    landing = service.create_container(landing_name)
    service.create_container(lake_name)
    try:
        landing.upload_blob("orders/2025/a.parquet", parquet_bytes(0, 2))
        landing.upload_blob("orders/2026/b.parquet", parquet_bytes(10, 3))
        landing.upload_blob("customers/2026/q1/c.csv", b"cid,name\n1,ann\n2,bob\n")
        landing.upload_blob("partner-x/returns_0101.csv", b"rid,qty\n7,5\n")
        landing.upload_blob("notes/readme.txt", b"not data")
        routes = f"""
            [[route]]
            match = "{landing_name}/{{dataset}}/{{year}}/*.parquet"
            table = "abfs://{lake_name}/{{dataset}}"
            partition_by = ["year"]

            [[route]]
            match = "*/customers/**/*.csv"
            table = "abfs://{lake_name}/customers"

            [[route]]
            match = "*/partner-x/returns_*.csv"
            table = "abfs://{lake_name}/returns"
        """
        ledger = f"azure-table://{unique_name}ledger"
        env = {"INGEST_STORAGE_CONNECTION": azurite, "INGEST_ROUTES": routes,
               "INGEST_LEDGER_URI": ledger}
        result = run_cli("run", f"abfs://{landing_name}/", "--json", env=env)
        assert result.returncode == 1, result.stderr
        report = json.loads(result.stdout)
        assert (report["ingested"], report["unrouted"], report["rows"]) == (4, 1, 8)

        storage = StorageConfig(connection_string=azurite)
        orders_uri = f"abfs://{lake_name}/orders"
        orders = read_table(orders_uri, delta_storage_options(orders_uri, storage))
        assert sorted(zip(orders.column("id").to_pylist(), orders.column("year").to_pylist(),
                          strict=True)) == [
            (0, "2025"), (1, "2025"), (10, "2026"), (11, "2026"), (12, "2026")]
        names = {b.name.split("/")[1] for b in service.get_container_client(lake_name)
                 .list_blobs(name_starts_with="orders/year=")}
        assert names == {"year=2025", "year=2026"}
        for table, count in (("customers", 2), ("returns", 1)):
            uri = f"abfs://{lake_name}/{table}"
            assert read_table(uri, delta_storage_options(uri, storage)).num_rows == count

        status = run_cli("status", "--json", "--table", UNROUTED_TABLE, env=env)
        rows = json.loads(status.stdout)
        assert [(r["status"], r["path"].rsplit("/", 1)[-1]) for r in rows] == [
            ("quarantined", "readme.txt")]
        assert f"no route matches '{landing_name}/notes/readme.txt'" in rows[0]["error"]
        again = json.loads(run_cli("run", f"abfs://{landing_name}/", "--json", env=env).stdout)
        assert (again["skipped"], again["unrouted"]) == (4, 1)
    finally:
        service.delete_container(landing_name)
        service.delete_container(lake_name)


@pytest.mark.slow
def test_routed_run_with_worker_processes(landing, lake, routes_file):
    three_feeds(landing)
    result = run_cli("run", str(landing), "--routes", str(routes_file), "--workers", "2",
                     "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert (report["ingested"], report["unrouted"], report["rows"]) == (4, 1, 8)
    assert {f["table"] for f in report["files"] if f["status"] == "ingested"} == {
        f"{lake}/orders", f"{lake}/customers", f"{lake}/returns"}
    assert sorted(read_table(f"{lake}/orders").column("year").to_pylist()) == [
        "2025", "2025", "2026", "2026", "2026"]


def test_partition_by_a_data_column_even_when_the_file_dictionary_encodes_it(landing, lake,
                                                                             tmp_path):
    write_text(landing / "eu" / "a.csv", "id,region\n1,north\n2,south\n")
    table = pa.table({"id": [3, 4], "region": pa.array(["north", "west"]).dictionary_encode()})
    pq.write_table(table, landing / "eu" / "b.parquet")
    routes = tmp_path / "routes.toml"
    routes.write_text(f'[[route]]\nmatch = "{{zone}}/*"\ntable = "{lake}/sales"\n'
                      'partition_by = ["zone", "region"]\n')
    result = run_cli("run", str(landing), "--routes", str(routes), "--json")
    assert result.returncode == 0, result.stdout
    sales = lake / "sales"
    assert list(DeltaTable(str(sales)).metadata().partition_columns) == ["zone", "region"]
    assert sorted(p.name for p in (sales / "zone=eu").iterdir()) == [
        "region=north", "region=south", "region=west"]
    rows = read_table(str(sales)).select(["id", "zone", "region"]).to_pylist()
    assert sorted((r["id"], r["zone"], r["region"]) for r in rows) == [
        (1, "eu", "north"), (2, "eu", "south"), (3, "eu", "north"), (4, "eu", "west")]
