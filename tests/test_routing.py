"""Routes files: patterns and captures, first match wins, table templates, validation by line."""

from __future__ import annotations

import re
import textwrap

import pytest

from ingest_core import ConfigurationError, IngestConfig
from ingest_core.routing import (
    check_routes,
    compile_pattern,
    load_routes,
    parse_routes,
    routing_path,
)
from ingest_core.sources import SourceFile


def routes(text: str):
    return parse_routes(textwrap.dedent(text), "routes.toml")


def problems(text: str) -> list[tuple[int | None, str]]:
    found, listed = check_routes(textwrap.dedent(text), "routes.toml")
    assert found is None
    return [(p.line, p.message) for p in listed]


@pytest.mark.parametrize(("pattern", "path", "captures"), [
    ("{dataset}/{year}/*.parquet", "orders/2026/a.parquet", {"dataset": "orders", "year": "2026"}),
    ("partner-x/returns_*.csv", "partner-x/returns_0101.csv", {}),
    ("partner-x/returns_{day}.csv", "partner-x/returns_0101.csv", {"day": "0101"}),
    ("customers/**/*.csv", "customers/a.csv", {}),
    ("customers/**/*.csv", "customers/2026/q1/a.csv", {}),
    ("**/*.jsonl", "deep/er/x.jsonl", {}),
    ("logs/**", "logs/2026/01/x.gz", {}),
    ("a.b/(x)+[y].csv", "a.b/(x)+[y].csv", {}),
])
def test_pattern_matches_and_captures(pattern, path, captures):
    found = compile_pattern(pattern).regex.fullmatch(path)
    assert found is not None
    assert found.groupdict() == captures


@pytest.mark.parametrize(("pattern", "path"), [
    ("{dataset}/{year}/*.parquet", "orders/2026/q1/a.parquet"),  # {name} is one segment
    ("{dataset}/{year}/*.parquet", "orders/a.parquet"),
    ("*.csv", "sub/a.csv"),  # * stays within a segment
    ("customers/**/*.csv", "orders/a.csv"),
    ("partner-x/returns_*.csv", "partner-x/returns_1.csv.gz"),
    ("a.b/x.csv", "aXb/x.csv"),  # literal dots are literal
])
def test_pattern_refuses(pattern, path):
    assert compile_pattern(pattern).regex.fullmatch(path) is None


@pytest.mark.parametrize(("pattern", "fragment"), [
    ("", "empty"),
    ("/abs/*.csv", "starts with '/'"),
    ("a//b", "empty segment"),
    ("a/**b/c", "whole segment"),
    ("{a}{b}.csv", "ambiguous"),
    ("*{a}.csv", "ambiguous"),
    ("{a/b", "unbalanced"),
    ("x}.csv", "unbalanced"),
    ("{a}/{a}.csv", "twice"),
    ("{1x}.csv", "letters, digits and _"),
])
def test_bad_patterns_say_why(pattern, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        compile_pattern(pattern)


def test_first_match_wins_in_file_order():
    table = routes("""
        [[route]]
        match = "orders/special/*.csv"
        table = "./lake/special"

        [[route]]
        match = "{dataset}/**/*.csv"
        table = "./lake/{dataset}"
    """)
    assert table.route_for("orders/special/a.csv").table == "./lake/special"
    assert table.route_for("orders/2026/a.csv").table == "./lake/orders"
    assert table.route_for("orders/special/a.csv").route.index == 1
    assert table.route_for("readme.txt") is None


def test_table_template_takes_captures_and_partition_columns_are_the_captures_named():
    found = routes("""
        [[route]]
        match = "{dataset}/{year}/{month}/*.parquet"
        table = "abfss://lake@acct.dfs.core.windows.net/{dataset}"
        partition_by = ["year", "region"]
        format = "parquet"
        schema_mode = "strict"
        lineage = false
    """).route_for("orders/2026/03/a.parquet")
    assert found is not None
    assert found.table == "abfss://lake@acct.dfs.core.windows.net/orders"
    assert found.captures == {"dataset": "orders", "year": "2026", "month": "03"}
    assert found.columns == {"year": "2026"}  # region is a data column, month not partitioned
    config = found.config(IngestConfig(table_uri="", format="csv", ledger_uri="sqlite:///l"))
    assert (config.table_uri, config.format, config.schema_mode, config.lineage) == (
        found.table, "parquet", "strict", False)
    assert config.partition_by == ("year", "region") and config.ledger_uri == "sqlite:///l"


def test_run_wide_settings_fill_what_a_route_leaves_out():
    found = routes("""
        [[route]]
        match = "*.csv"
        table = "./lake/t"
    """).route_for("a.csv")
    base = IngestConfig(table_uri="", format="csv", schema_mode="strict", lineage=False,
                        transform="m:f")
    config = found.config(base)
    assert (config.format, config.schema_mode, config.lineage, config.transform) == (
        "csv", "strict", False, "m:f")


def test_captures_that_climb_out_of_the_folder_do_not_match():
    table = routes("""
        [[route]]
        match = "{dataset}/*.csv"
        table = "./lake/{dataset}"
    """)
    assert table.route_for("../a.csv") is None
    assert "climb" in table.explain("../a.csv")[0].reason


def test_explain_gives_each_route_a_reason_up_to_the_winner():
    table = routes("""
        [[route]]
        name = "orders"
        match = "orders/{year}/*.parquet"
        table = "./lake/orders"

        [[route]]
        match = "customers/**/*.csv"
        table = "./lake/customers"

        [[route]]
        match = "**"
        table = "./lake/everything"
    """)
    verdicts = table.explain("customers/2026/a.csv")
    assert [v.matched for v in verdicts] == [False, True]
    assert "segment 'customers' does not match 'orders'" in verdicts[0].reason
    assert "table ./lake/customers" in verdicts[1].reason
    short = table.explain("orders/a.parquet")
    assert "the path has 2 segments, the pattern 3" in short[0].reason
    assert short[-1].route.index == 3


def test_blob_urls_route_as_container_and_blob_name():
    url = "abfss://landing@acct.dfs.core.windows.net/partner-x/returns_1.csv"
    assert routing_path(SourceFile(uri=url, relative="returns_1.csv")) == (
        "landing/partner-x/returns_1.csv")
    azurite = "http://127.0.0.1:10000/devstoreaccount1/landing/orders/a%23b.csv"
    assert routing_path(SourceFile(uri=azurite, relative="a#b.csv")) == "landing/orders/a#b.csv"
    assert routing_path(SourceFile(uri="/data/landing/orders/a.csv", relative="orders/a.csv")) == (
        "orders/a.csv")


def test_every_problem_is_reported_with_its_line():
    found = problems("""
        # feeds
        [[route]]
        match = "{dataset}/*.csv"
        tabel = "./lake/{dataset}"

        [[route]]
        match = "a/**b"
        table = "./lake/x"

        [[route]]
        match = "*.csv"
        table = "s3://bucket/t"
        format = "xml"
        partition_by = "year"

        [[route]]
        match = "{x}.csv"
        table = "./lake/{y}"
        transform = "no_such_module_anywhere:fn"
        lineage = "yes"
    """)
    by_line = {}
    for line, message in found:
        by_line.setdefault(line, []).append(message)
    assert "unknown key 'tabel'" in by_line[5][0]
    assert any("no 'table'" in m for m in by_line[3])  # missing key: the [[route]] line
    assert "'**' must be a whole segment" in by_line[8][0]
    assert "unsupported table URI" in by_line[13][0]
    assert "format 'xml'" in by_line[14][0]
    assert "partition_by must be a list" in by_line[15][0]
    assert "{y}" in by_line[19][0] and "does not capture" in by_line[19][0]
    assert "unreachable transform" in by_line[20][0]
    assert "lineage must be true or false" in by_line[21][0]
    assert all(m.startswith("route ") for ms in by_line.values() for m in ms)


def test_toml_syntax_errors_name_their_line():
    assert problems('[[route]]\nmatch = "a"\ntable = \n')[0][0] == 3


def test_a_file_without_routes_or_with_other_tables_is_refused():
    assert "no routes" in problems('title = "x"\n')[-1][1]
    listed = problems('version = 2\n[[route]]\nmatch = "*"\ntable = "t"\n')
    assert listed == [(1, "unknown top-level key 'version'; only [[route]] tables belong here")]


def test_lineage_columns_cannot_partition():
    found = problems('[[route]]\nmatch = "*"\ntable = "t"\npartition_by = ["_ingest_file"]\n')
    assert found[0][0] == 4 and "lineage columns" in found[0][1]


def test_parse_error_names_file_and_line(tmp_path):
    path = tmp_path / "routes.toml"
    path.write_text('[[route]]\nmatch = "*.csv"\ntable = "./t"\nformt = "csv"\n')
    with pytest.raises(ConfigurationError) as info:
        load_routes(str(path))
    assert f"{path}:4: route 1: unknown key 'formt'" in str(info.value)


def test_routes_load_from_a_path_or_from_toml_text(tmp_path):
    text = '[[route]]\nmatch = "*.csv"\ntable = "./t"\n'
    path = tmp_path / "routes.toml"
    path.write_text(text)
    assert load_routes(str(path)).origin == str(path)
    assert load_routes(text).origin is None
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_routes(str(tmp_path / "missing.toml"))


def test_a_single_bracket_route_table_is_refused_at_its_line():
    assert problems('# x\n[route]\nmatch = "*"\ntable = "t"\n') == [
        (2, "write [[route]] (one per route), not [route]")]
