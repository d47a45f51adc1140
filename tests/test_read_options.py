"""Exports nobody controls (issue 17): dialects, encodings, JSON arrays, hints, empty files,
column names, time zones, and bad rows rescued. Every file is built here, as an exporter
would write it, and ingested into a real Delta table."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from helpers import read_table, run_cli, write_text

from ingest_core import IdempotentIngestor
from ingest_core.config import from_env
from ingest_core.read_options import ReadOptions
from ingest_core.results import RunStats


def _ingest(
    landing: Path, table_uri: str, stream_bytes: int | None = None, **read: object
) -> RunStats:
    options = {"stream_bytes": stream_bytes} if stream_bytes else {}
    with IdempotentIngestor(table=table_uri, read=ReadOptions(**read), **options) as ing:  # type: ignore[arg-type]
        return ing.ingest_directory(str(landing))


def _rows(table_uri: str, *columns: str) -> list[dict[str, object]]:
    table = read_table(table_uri).select(list(columns))
    return sorted(table.to_pylist(), key=lambda r: json.dumps(r, default=str))


def _by_name(stats: RunStats) -> dict[str, object]:
    return {Path(r.path).name: r for r in stats.files}


# -- dialect and encoding -------------------------------------------------------------


EUROPEAN = "order_id;amount;customer\n1;12,50;Müller\n2;1234,05;\"Dupont; Fils\"\n"


def test_semicolon_csv_with_comma_decimals_lands_typed_by_hints(landing: Path, table_uri: str):
    write_text(landing / "export.csv", EUROPEAN)
    stats = _ingest(landing, table_uri, csv_delimiter=";", csv_decimal=",",
                    schema_hints="order_id BIGINT, amount DECIMAL(10,2)")
    assert stats.ingested == 1, [r.error for r in stats.files]
    schema = DeltaTable(table_uri).schema().to_arrow()
    assert pa.schema(schema).field("order_id").type == pa.int64()
    assert pa.schema(schema).field("amount").type == pa.decimal128(10, 2)
    assert _rows(table_uri, "order_id", "amount", "customer") == [
        {"order_id": 1, "amount": Decimal("12.50"), "customer": "Müller"},
        {"order_id": 2, "amount": Decimal("1234.05"), "customer": "Dupont; Fils"},
    ]


def test_comma_decimals_are_floats_without_hints(landing: Path, table_uri: str):
    write_text(landing / "export.csv", EUROPEAN)
    stats = _ingest(landing, table_uri, csv_delimiter=";", csv_decimal=",")
    assert stats.ingested == 1, [r.error for r in stats.files]
    assert sorted(read_table(table_uri).column("amount").to_pylist()) == [12.5, 1234.05]


@pytest.mark.parametrize(("delimiter", "shown"), [(";", "';'"), ("\t", "a tab"), ("|", "'|'")])
def test_one_column_header_holding_another_delimiter_is_refused(
    landing: Path, table_uri: str, delimiter: str, shown: str
):
    write_text(landing / "export.csv", delimiter.join("abc") + "\n" + delimiter.join("123") + "\n")
    stats = _ingest(landing, table_uri)
    [result] = stats.files
    assert result.status == "quarantined"
    assert "export.csv" in (result.error or "") and "--csv-delimiter" in (result.error or "")
    assert f"holding {shown}" in (result.error or "")
    assert not Path(table_uri).exists()


def test_tab_delimited_file_lands_with_the_delimiter_set(landing: Path, table_uri: str):
    write_text(landing / "export.tsv.csv", "a\tb\n1\tx y\n")
    stats = _ingest(landing, table_uri, csv_delimiter="\t")
    assert stats.ingested == 1, [r.error for r in stats.files]
    assert _rows(table_uri, "a", "b") == [{"a": 1, "b": "x y"}]


def test_quote_escape_and_null_values(landing: Path, table_uri: str):
    write_text(landing / "q.csv", "id,note,qty\n1,'it\\'s, fine',n/a\n2,'plain',-\n3,x,7\n")
    stats = _ingest(landing, table_uri, csv_quote="'", csv_escape="\\", csv_nulls=("n/a", "-"))
    assert stats.ingested == 1, [r.error for r in stats.files]
    assert _rows(table_uri, "id", "note", "qty") == [
        {"id": 1, "note": "it's, fine", "qty": None},
        {"id": 2, "note": "plain", "qty": None},
        {"id": 3, "note": "x", "qty": 7},
    ]


def test_headerless_csv_takes_its_columns_from_the_hints(landing: Path, table_uri: str):
    write_text(landing / "raw.csv", "1,2026-01-02,alpha\n2,2026-01-03,beta\n")
    stats = _ingest(landing, table_uri, csv_no_header=True,
                    schema_hints="id INT, day DATE, label STRING")
    assert stats.ingested == 1, [r.error for r in stats.files]
    schema = pa.schema(DeltaTable(table_uri).schema().to_arrow())
    assert schema.field("id").type == pa.int32() and schema.field("day").type == pa.date32()
    assert [r["label"] for r in _rows(table_uri, "id", "label")] == ["alpha", "beta"]


@pytest.mark.parametrize(
    ("encoding", "codec", "bom"),
    [("latin-1", "latin-1", b""), ("cp1252", "cp1252", b""), ("utf-16", "utf-16", b"")],
)
def test_encodings(landing: Path, table_uri: str, encoding: str, codec: str, bom: bytes):
    text = "id,name\n1,Zoë Ærø\n2,Café\n" + ("3,€ 5\n" if codec != "latin-1" else "")
    (landing / "enc.csv").write_bytes(bom + text.encode(codec))
    refused = _ingest(landing, table_uri + "_utf8")
    assert refused.quarantined == 1
    assert "--encoding" in (refused.files[0].error or "")
    stats = _ingest(landing, table_uri, encoding=encoding)
    assert stats.ingested == 1, [r.error for r in stats.files]
    names = [r["name"] for r in _rows(table_uri, "id", "name")]
    assert "Zoë Ærø" in names and "Café" in names
    if codec != "latin-1":
        assert "€ 5" in names


# -- JSON -------------------------------------------------------------------------------


def test_json_array_of_objects_is_read_as_rows(landing: Path, table_uri: str):
    rows = [{"id": i, "name": f"n{i}", "tags": {"k": i % 3}} for i in range(30_000)]
    # pretty-printed, several MiB: objects cross the reader's chunk boundaries
    (landing / "export.json").write_text(json.dumps(rows, indent=2))
    write_text(landing / "lines.json", '{"id": -1, "name": "line"}\n{"id": -2, "name": "x"}\n')
    write_text(landing / "empty.json", "[ ]")
    stats = _ingest(landing, table_uri)
    by_name = _by_name(stats)
    assert all(r.status == "ingested" for r in by_name.values()), [r.error for r in stats.files]
    assert by_name["export.json"].rows == 30_000
    assert by_name["empty.json"].rows == 0
    ids = read_table(table_uri).column("id").to_pylist()
    assert sorted(ids) == [-2, -1, *range(30_000)]


def test_json_array_holding_a_non_object_is_refused_by_element(landing: Path, table_uri: str):
    write_text(landing / "bad.json", '[{"id": 1}, 2]')
    stats = _ingest(landing, table_uri)
    assert stats.quarantined == 1
    assert "element 1" in (stats.files[0].error or "")


def test_large_json_array_streams_into_its_own_commit(landing: Path, table_uri: str):
    rows = [{"id": i, "payload": "x" * 40} for i in range(400_000)]
    (landing / "big.json").write_text(json.dumps(rows))
    assert (landing / "big.json").stat().st_size > 16 * 1024 * 1024
    stats = _ingest(landing, table_uri)
    assert stats.ingested == 1, [r.error for r in stats.files]
    assert read_table(table_uri).num_rows == 400_000


# -- empty files -----------------------------------------------------------------------


def test_header_only_csv_adds_no_columns_and_no_types(landing: Path, table_uri: str):
    write_text(landing / "a_no_data_today.csv", "id,amount,when\n")
    stats = _ingest(landing, table_uri)
    assert stats.ingested == 1 and stats.files[0].rows == 0
    assert not Path(table_uri).exists()
    write_text(landing / "b_data.csv", "id,amount,when\n1,2.5,2026-01-01T00:00:00Z\n")
    stats = _ingest(landing, table_uri)
    assert [r.status for r in stats.files] == ["skipped", "ingested"]
    schema = pa.schema(DeltaTable(table_uri).schema().to_arrow())
    assert schema.field("id").type == pa.int64()
    assert schema.field("amount").type == pa.float64()
    assert pa.types.is_timestamp(schema.field("when").type)


def test_empty_file_into_an_existing_table_changes_nothing(landing: Path, table_uri: str):
    write_text(landing / "a.csv", "id\n1\n")
    _ingest(landing, table_uri)
    version = DeltaTable(table_uri).version()
    write_text(landing / "b.csv", "id,extra\n")
    stats = _ingest(landing, table_uri)
    assert _by_name(stats)["b.csv"].status == "ingested"
    assert DeltaTable(table_uri).version() == version
    assert "extra" not in read_table(table_uri).column_names


# -- column names ------------------------------------------------------------------------


def test_names_spark_refuses_are_refused_with_the_reason(landing: Path, table_uri: str):
    write_text(landing / "names.csv", '"Order ID","amount (EUR)",ok\n1,2,3\n')
    stats = _ingest(landing, table_uri)
    assert stats.quarantined == 1
    error = stats.files[0].error or ""
    assert "'Order ID'" in error and "'amount (EUR)'" in error and "--normalize-names" in error
    assert "'ok'" not in error


def test_normalized_names_keep_the_originals_in_column_metadata(landing: Path, table_uri: str):
    write_text(landing / "names.csv", '"Order ID","amount (EUR)",customerName\n1,2,x\n')
    pq.write_table(pa.table({"Order ID": [5], "amount (EUR)": [1]}), landing / "z_more.parquet")
    stats = _ingest(landing, table_uri, normalize_names=True, schema_hints="order_id INT")
    assert stats.ingested == 2, [r.error for r in stats.files]
    table = DeltaTable(table_uri)
    fields = {f.name: f for f in table.schema().fields}
    assert {"order_id", "amount_eur", "customer_name"} <= set(fields)
    assert fields["order_id"].metadata.get("ingest.original_name") == "Order ID"
    assert fields["amount_eur"].metadata.get("ingest.original_name") == "amount (EUR)"
    assert sorted(read_table(table_uri).column("order_id").to_pylist()) == [1, 5]
    # a hint may name the column as it is stored
    assert read_table(table_uri).schema.field("order_id").type == pa.int32()


# -- time zones --------------------------------------------------------------------------


def _aware_table(table_uri: str) -> None:
    Path(table_uri).parent.mkdir(parents=True, exist_ok=True)
    from deltalake import write_deltalake

    write_deltalake(table_uri, pa.table({
        "id": pa.array([0], pa.int64()),
        "at": pa.array([datetime(2026, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
    }))


def test_naive_timestamps_into_an_aware_column_are_refused_without_a_zone(
    landing: Path, table_uri: str
):
    _aware_table(table_uri)
    write_text(landing / "naive.csv", "id,at\n1,2026-07-01 12:00:00\n")
    stats = _ingest(landing, table_uri)
    assert stats.quarantined == 1
    assert "--timezone" in (stats.files[0].error or "")
    assert read_table(table_uri).num_rows == 1


def test_naive_timestamps_take_the_zone_given(landing: Path, table_uri: str):
    _aware_table(table_uri)
    write_text(landing / "naive.csv", "id,at\n1,2026-07-01 12:00:00\n")
    stats = _ingest(landing, table_uri, timezone="Europe/Paris")
    assert stats.ingested == 1, [r.error for r in stats.files]
    at = {r["id"]: r["at"] for r in _rows(table_uri, "id", "at")}
    assert at[1] == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)  # CEST is UTC+2


def test_timestamp_hint_reads_offsets_and_refuses_naive_text(landing: Path, table_uri: str):
    write_text(landing / "a.csv", "id,at\n1,2026-07-01T12:00:00+02:00\n")
    write_text(landing / "b.csv", "id,at\n2,2026-07-01 12:00:00\n")
    stats = _ingest(landing, table_uri, schema_hints="at TIMESTAMP")
    by_name = _by_name(stats)
    assert by_name["a.csv"].status == "ingested", by_name["a.csv"].error
    assert by_name["b.csv"].status == "quarantined"
    assert "--timezone" in (by_name["b.csv"].error or "")
    assert _rows(table_uri, "id", "at") == [
        {"id": 1, "at": datetime(2026, 7, 1, 10, 0, tzinfo=UTC)}
    ]


# -- bad rows ------------------------------------------------------------------------------


MESSY = (
    "id;amount;name\n"
    "1;10;ok\n"
    "2;unknown;bad amount\n"
    "3;30;ragged;extra\n"
    "4;40;ok\n"
)


def test_one_bad_value_quarantines_the_file_by_default(landing: Path, table_uri: str):
    write_text(landing / "messy.csv", "id,amount\n1,10\n2,unknown\n")
    stats = _ingest(landing, table_uri, schema_hints="amount BIGINT")
    assert stats.quarantined == 1
    assert "--bad-rows rescue" in (stats.files[0].error or "")


def test_rescue_keeps_bad_values_and_rows_aside_and_lands_the_rest(
    landing: Path, table_uri: str
):
    write_text(landing / "messy.csv", MESSY)
    stats = _ingest(landing, table_uri, csv_delimiter=";", schema_hints="amount BIGINT",
                    bad_rows="rescue")
    [result] = stats.files
    assert result.status == "ingested", result.error
    assert (result.rows, result.rescued_rows, result.bad_rows) == (3, 1, 1)
    assert (stats.rescued_rows, stats.bad_rows) == (1, 1)
    rows = _rows(table_uri, "id", "amount", "_rescued_data")
    assert rows == [
        {"id": 1, "amount": 10, "_rescued_data": None},
        {"id": 2, "amount": None, "_rescued_data": json.dumps({"amount": "unknown"})},
        {"id": 4, "amount": 40, "_rescued_data": None},
    ]
    bad = read_table(table_uri + "_bad_rows").to_pylist()
    assert len(bad) == 1
    assert bad[0]["_ingest_file"] == result.path and bad[0]["_ingest_sha256"] == result.sha256
    assert bad[0]["line"] == 4 and bad[0]["raw"] == "3;30;ragged;extra"
    assert "expected 3 columns, got 4" in bad[0]["reason"]
    [commit] = [c for c in DeltaTable(table_uri + "_bad_rows").history() if "ingest.run_id" in c]
    assert commit["ingest.run_id"] == result.run_id == stats.run_id


def test_rescue_on_an_existing_typed_column(landing: Path, table_uri: str):
    write_text(landing / "a.csv", "id,amount\n1,10\n")
    _ingest(landing, table_uri)
    write_text(landing / "b.csv", "id,amount\n2,lots\n3,30\n")
    stats = _ingest(landing, table_uri, bad_rows="rescue")
    assert _by_name(stats)["b.csv"].status == "ingested", [r.error for r in stats.files]
    rows = {r["id"]: r for r in _rows(table_uri, "id", "amount", "_rescued_data")}
    assert rows[2]["amount"] is None and json.loads(rows[2]["_rescued_data"]) == {
        "amount": "lots"}
    assert rows[3]["amount"] == 30


def test_invalid_json_lines_go_to_the_bad_rows_table(landing: Path, table_uri: str):
    write_text(landing / "events.jsonl", '{"id": 1}\n{"id": 2,\n[3]\n{"id": 4}\n')
    bad_table = str(Path(table_uri).parent / "quarantine_rows")
    stats = _ingest(landing, table_uri, bad_rows="rescue", bad_rows_table=bad_table)
    assert stats.files[0].status == "ingested", stats.files[0].error
    assert (stats.files[0].rows, stats.files[0].bad_rows) == (2, 2)
    bad = sorted(read_table(bad_table).to_pylist(), key=lambda r: r["line"])
    assert [(b["line"], b["raw"]) for b in bad] == [(2, '{"id": 2,'), (3, "[3]")]
    assert "not JSON" in bad[0]["reason"] and "not an object" in bad[1]["reason"]


@pytest.mark.parametrize("existing", [False, True], ids=["new table", "schema grows"])
def test_large_csv_streams_with_rescue(landing: Path, table_uri: str, existing: bool):
    if existing:  # then _rescued_data is a new column: delta-rs writes the stream
        write_text(landing.parent / "seed" / "seed.csv", "id,amount,name\n-1,-1,seed\n")
        _ingest(landing.parent / "seed", table_uri)
    lines = ["id,amount,name"]
    for i in range(600_000):
        if i in (5, 400_000):
            lines.append(f"{i},unknown,bad")
        elif i == 500_000:
            lines.append(f"{i},1,2,3")
        else:
            lines.append(f"{i},{i},name{i}")
    (landing / "big.csv").write_text("\n".join(lines) + "\n")
    # past the 8 MiB read whole for inference, and streamed (more than stream_bytes)
    assert (landing / "big.csv").stat().st_size > 8 * 1024 * 1024
    stats = _ingest(landing, table_uri, stream_bytes=4 * 1024 * 1024, bad_rows="rescue",
                    schema_hints="amount BIGINT")
    [result] = stats.files
    assert result.status == "ingested", result.error
    assert (result.rows, result.rescued_rows, result.bad_rows) == (599_999, 2, 1)
    table = read_table(table_uri)
    assert table.num_rows == 599_999 + existing
    assert table.column("_rescued_data").null_count == 599_997 + existing
    [bad] = read_table(table_uri + "_bad_rows").to_pylist()
    assert bad["line"] == 500_002 and bad["raw"] == "500000,1,2,3"


def test_bad_rows_land_once_when_the_worker_dies_before_the_files_commit(
    landing: Path, table_uri: str
):
    write_text(landing / "messy.csv", MESSY)
    args = ["run", str(landing), "--table", table_uri, "--csv-delimiter", ";",
            "--bad-rows", "rescue", "--lease-seconds", "1"]
    killed = run_cli(*args, env={"INGEST_FAULT_POINT": "during_write"})
    assert killed.returncode != 0
    assert len(read_table(table_uri + "_bad_rows")) == 1  # committed before the kill
    assert not (Path(table_uri) / "_delta_log").exists() or read_table(table_uri).num_rows == 0
    time.sleep(1.5)  # the dead worker's lease runs out
    done = run_cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ingested"] == 1
    assert read_table(table_uri).num_rows == 3
    assert len(read_table(table_uri + "_bad_rows")) == 1
    again = run_cli(*args, "--json")
    assert json.loads(again.stdout)["skipped"] == 1
    assert len(read_table(table_uri + "_bad_rows")) == 1


# -- where the options come from -------------------------------------------------------------


def test_environment_variables_build_the_read_options():
    config = from_env({
        "INGEST_TABLE_URI": "./t", "INGEST_CSV_DELIMITER": "tab", "INGEST_CSV_QUOTE": "'",
        "INGEST_CSV_ESCAPE": "\\", "INGEST_CSV_NULL": ",n/a", "INGEST_CSV_NO_HEADER": "true",
        "INGEST_ENCODING": "cp1252", "INGEST_SCHEMA_HINTS": "id BIGINT",
        "INGEST_BAD_ROWS": "rescue", "INGEST_BAD_ROWS_TABLE": "./bad",
        "INGEST_NORMALIZE_NAMES": "1", "INGEST_TIMEZONE": "Europe/Paris",
        "INGEST_CSV_DECIMAL": ",",
    })
    assert config.read == ReadOptions(
        csv_delimiter="\t", csv_quote="'", csv_escape="\\", csv_nulls=("", "n/a"),
        csv_no_header=True, encoding="cp1252", schema_hints="id BIGINT", bad_rows="rescue",
        bad_rows_table="./bad", normalize_names=True, timezone="Europe/Paris", csv_decimal=",",
    )
    assert hash(config)  # configurations are dictionary keys


def test_cli_flags_read_a_semicolon_export(landing: Path, table_uri: str):
    write_text(landing / "export.csv", EUROPEAN)
    result = run_cli("run", str(landing), "--table", table_uri, "--csv-delimiter", ";",
                     "--csv-decimal", ",", "--schema-hints", "amount DECIMAL(10,2)",
                     "--csv-null", "", "--csv-null", "n/a", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["ingested"], out["rows"], out["rescued_rows"], out["bad_rows"]) == (1, 2, 0, 0)
    assert read_table(table_uri).column("amount").type == pa.decimal128(10, 2)


def test_bad_option_values_stop_the_run_before_any_file(landing: Path, table_uri: str):
    write_text(landing / "a.csv", "id\n1\n")
    for args in (["--csv-delimiter", ";;"], ["--encoding", "klingon"],
                 ["--schema-hints", "id WHATEVER"], ["--timezone", "Mars/Olympus"],
                 ["--csv-no-header"]):
        result = run_cli("run", str(landing), "--table", table_uri, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "ingest: error:" in result.stderr
    assert not Path(table_uri).exists()


def test_route_keys_set_the_read_options_per_feed(tmp_path: Path, landing: Path):
    write_text(landing / "eu" / "export.csv", EUROPEAN)
    write_text(landing / "us" / "export.csv", "order_id,amount\n9,1.5\n")
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f'[[route]]\nmatch = "eu/*.csv"\ntable = "{tmp_path}/lake/eu"\n'
        'csv_delimiter = ";"\ncsv_decimal = ","\nschema_hints = "amount DECIMAL(10,2)"\n'
        'csv_null = ["", "n/a"]\nnormalize_names = true\n'
        f'[[route]]\nmatch = "us/*.csv"\ntable = "{tmp_path}/lake/us"\n'
    )
    result = run_cli("run", str(landing), "--routes", str(routes), "--json")
    assert result.returncode == 0, result.stderr
    assert read_table(f"{tmp_path}/lake/eu").column("amount").type == pa.decimal128(10, 2)
    assert read_table(f"{tmp_path}/lake/us").column("amount").to_pylist() == [1.5]
    routes.write_text(
        f'[[route]]\nmatch = "**"\ntable = "{tmp_path}/lake/x"\ncsv_delimiter = ";;"\n'
        'bad_rows = "sometimes"\ncsv_null = "n/a"\n'
    )
    checked = run_cli("routes", "check", str(routes))
    assert checked.returncode != 0
    for key in ("csv_delimiter", "bad_rows", "csv_null"):
        assert key in checked.stdout + checked.stderr


def test_show_counts_a_files_rescued_and_bad_rows(landing: Path, table_uri: str):
    write_text(landing / "messy.csv", MESSY)
    _ingest(landing, table_uri, csv_delimiter=";", schema_hints="amount BIGINT",
            bad_rows="rescue")
    shown = run_cli("show", str(landing / "messy.csv"), "--table", table_uri, "--json")
    assert shown.returncode == 0, shown.stderr
    delta = json.loads(shown.stdout)["files"][0]["delta"]
    assert (delta["rescued_rows"], delta["bad_rows"]) == (1, 1)
    human = run_cli("show", str(landing / "messy.csv"), "--table", table_uri)
    assert "delta.rescued_rows" in human.stdout and "delta.bad_rows" in human.stdout


def test_rescue_keeps_json_values_of_the_wrong_type(landing: Path, table_uri: str):
    write_text(landing / "a.jsonl", '{"id": 1, "amount": 10, "ok": true, "tags": [1]}\n')
    _ingest(landing, table_uri)
    rows = [{"id": 2, "amount": "lots", "ok": "yes", "tags": [2]},
            {"id": 3, "amount": 30.0, "ok": False, "tags": []}]
    (landing / "b.json").write_text(json.dumps(rows))
    stats = _ingest(landing, table_uri, bad_rows="rescue")
    result = _by_name(stats)["b.json"]
    assert result.status == "ingested", result.error
    assert (result.rows, result.rescued_rows, result.bad_rows) == (2, 1, 0)
    schema = pa.schema(DeltaTable(table_uri).schema().to_arrow())
    assert schema.field("amount").type == pa.int64() and schema.field("ok").type == pa.bool_()
    got = {r["id"]: r for r in _rows(table_uri, "id", "amount", "ok", "tags", "_rescued_data")}
    assert (got[2]["amount"], got[2]["ok"]) == (None, None)
    assert json.loads(got[2]["_rescued_data"]) == {"amount": "lots", "ok": "yes"}
    assert (got[3]["amount"], got[3]["ok"], got[3]["_rescued_data"]) == (30, False, None)
    assert got[2]["tags"] == [2]


def test_rescue_types_json_numbers_from_every_value(landing: Path, table_uri: str):
    write_text(landing / "a.jsonl", '{"id": 1, "x": 1.5}\n{"id": 2, "x": 2}\n')
    stats = _ingest(landing, table_uri, bad_rows="rescue")
    assert stats.ingested == 1, [r.error for r in stats.files]
    schema = pa.schema(DeltaTable(table_uri).schema().to_arrow())
    assert schema.field("id").type == pa.int64() and schema.field("x").type == pa.float64()


def test_empty_and_null_texts_in_hinted_or_rescued_columns_are_nulls(
    landing: Path, table_uri: str
):
    write_text(landing / "a.csv", "id,amount,note\n1,,\n2,NULL,x\n3,7,\n")
    stats = _ingest(landing, table_uri, schema_hints="amount BIGINT", bad_rows="rescue")
    assert stats.ingested == 1 and stats.files[0].rescued_rows == 0, stats.files[0].error
    assert _rows(table_uri, "id", "amount", "note") == [
        {"id": 1, "amount": None, "note": ""},
        {"id": 2, "amount": None, "note": "x"},
        {"id": 3, "amount": 7, "note": ""},
    ]


@pytest.mark.parametrize("bad_rows", ["quarantine", "rescue"])
def test_utf16_json_read_as_utf8_names_the_encoding(
    landing: Path, table_uri: str, bad_rows: str
):
    (landing / "e.jsonl").write_bytes('{"id": 1}\n'.encode("utf-16"))
    stats = _ingest(landing, table_uri, bad_rows=bad_rows)
    assert stats.quarantined == 1 and "--encoding utf-16" in (stats.files[0].error or "")
    stats = _ingest(landing, table_uri + "_16", bad_rows=bad_rows, encoding="utf-16")
    assert stats.ingested == 1, stats.files[0].error


def test_event_path_rescues_and_keeps_bad_rows_once(landing: Path, table_uri: str):
    write_text(landing.parent / "seed" / "seed.csv", "id;amount;name\n0;0;seed\n")
    _ingest(landing.parent / "seed", table_uri, csv_delimiter=";", bad_rows="rescue")
    write_text(landing / "messy.csv", MESSY)
    options = ReadOptions(csv_delimiter=";", bad_rows="rescue")
    with IdempotentIngestor(table=table_uri, read=options) as ing:
        [file] = ing.list_sources([str(landing / "messy.csv")])
        first = ing.ingest_one(file)  # the group commit: staged, then committed
        again = ing.ingest_one(file)
    assert first.status == "ingested", first.error
    assert (first.rows, first.rescued_rows, first.bad_rows) == (3, 1, 1)
    assert again.status == "skipped"
    assert read_table(table_uri).num_rows == 4
    assert len(read_table(table_uri + "_bad_rows")) == 1
