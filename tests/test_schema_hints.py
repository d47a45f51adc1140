"""Schema hints: the Databricks syntax parsed, typed, and refused clearly when wrong."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ingest_core.errors import ConfigurationError
from ingest_core.schema_hints import arrow_type, parse_hints


def test_databricks_hints_parse_to_arrow_types():
    hints = parse_hints(
        "order_id BIGINT, amount DECIMAL(10,2), ordered_at TIMESTAMP, day date, "
        "local_at TIMESTAMP_NTZ, `odd name, with comma` string, flag BOOLEAN, ratio double"
    )
    types = {name: arrow_type(spec) for name, spec in hints}
    assert types == {
        "order_id": pa.int64(),
        "amount": pa.decimal128(10, 2),
        "ordered_at": pa.timestamp("us", tz="UTC"),
        "day": pa.date32(),
        "local_at": pa.timestamp("us"),
        "odd name, with comma": pa.string(),
        "flag": pa.bool_(),
        "ratio": pa.float64(),
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("order_id", "name TYPE"),
        ("order_id BIGNUM", "unknown type BIGNUM"),
        ("amount DECIMAL(40,2)", "precision 1..38"),
        ("amount DECIMAL(x)", "DECIMAL(precision,scale)"),
        ("a INT, a BIGINT", "name a twice"),
        ("a INT extra", "name TYPE"),
    ],
)
def test_bad_hints_are_refused_with_the_hint_named(text: str, says: str):
    with pytest.raises(ConfigurationError, match=r"(?s).*" + says.replace("(", r"\(")
                       .replace(")", r"\)").replace(".", r"\.")):
        parse_hints(text)


def test_empty_entries_and_spacing_are_tolerated():
    assert parse_hints(" a  INT ,, b string ") == (("a", "int32"), ("b", "string"))
