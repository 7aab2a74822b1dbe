"""AnyValue <-> JSON conversion, attribute limits and NUL handling (tier 1: pure code)."""

from __future__ import annotations

import base64
import math
import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from receiver.mapping.common import dumps, text
from receiver.mapping.values import (
    Truncations,
    any_value_to_json,
    attributes_to_json,
    json_to_any_value,
    json_to_attributes,
)

NO_LIMIT = 1 << 30
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def array(*values: AnyValue) -> AnyValue:
    return AnyValue(array_value=ArrayValue(values=values))


def kvlist(**values: AnyValue) -> AnyValue:
    return kvlist_of(values)


def kvlist_of(values: dict[str, AnyValue]) -> AnyValue:
    return AnyValue(
        kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in values.items()])
    )


def through_database(value: AnyValue) -> AnyValue:
    """Convert to JSON, serialise and parse it as the database would, and convert back."""
    cuts = Truncations()
    stored = orjson.loads(orjson.dumps(any_value_to_json(value, NO_LIMIT, cuts)))
    assert not cuts
    back = AnyValue()
    json_to_any_value(stored, back)
    return back


def canonical_nan(value: AnyValue) -> AnyValue:
    """A copy with every NaN replaced by the one NaN that decoding produces.

    NaN payload and sign bits are not kept by the JSON form (and protobuf compares doubles
    bit for bit), so only "it was a NaN" can round-trip.
    """
    copy = AnyValue()
    copy.CopyFrom(value)
    stack = [copy]
    while stack:
        current = stack.pop()
        kind = current.WhichOneof("value")
        if kind == "double_value" and math.isnan(current.double_value):
            current.double_value = math.nan
        elif kind == "array_value":
            stack.extend(current.array_value.values)
        elif kind == "kvlist_value":
            stack.extend(kv.value for kv in current.kvlist_value.values)
    return copy


def assert_pg_json(data: bytes) -> None:
    """`data` is JSON that PostgreSQL's jsonb accepts: it parses, and no string holds U+0000."""
    parsed = orjson.loads(data)
    for match in re.finditer(rb"\\u0000", data):
        backslashes = len(data[: match.start()]) - len(data[: match.start()].rstrip(b"\\"))
        assert backslashes % 2 == 1, f"escaped NUL at {match.start()} in {data!r}"
    stack = [parsed]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            assert "\x00" not in item
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())


ROUND_TRIP_CASES = {
    "string": AnyValue(string_value="héllo ✓ 😀"),
    "empty string": AnyValue(string_value=""),
    "string with NUL": AnyValue(string_value="a\x00b"),
    "true": AnyValue(bool_value=True),
    "false": AnyValue(bool_value=False),
    "int zero": AnyValue(int_value=0),
    "int64 min": AnyValue(int_value=INT64_MIN),
    "int64 max": AnyValue(int_value=INT64_MAX),
    "double": AnyValue(double_value=1.5),
    "integral double": AnyValue(double_value=3.0),
    "huge double": AnyValue(double_value=1e300),
    "tiny double": AnyValue(double_value=5e-324),
    "double zero": AnyValue(double_value=0.0),
    "negative zero": AnyValue(double_value=-0.0),
    "NaN": AnyValue(double_value=math.nan),
    "infinity": AnyValue(double_value=math.inf),
    "minus infinity": AnyValue(double_value=-math.inf),
    "bytes": AnyValue(bytes_value=b"\x00\x01\xfe\xff"),
    "empty bytes": AnyValue(bytes_value=b""),
    "empty array": AnyValue(array_value=ArrayValue()),
    "empty kvlist": AnyValue(kvlist_value=KeyValueList()),
    "empty AnyValue": AnyValue(),
    "array of every kind": array(
        AnyValue(string_value="s"),
        AnyValue(bool_value=True),
        AnyValue(int_value=-7),
        AnyValue(double_value=-2.5),
        AnyValue(double_value=math.inf),
        AnyValue(bytes_value=b"b"),
        AnyValue(),
        array(AnyValue(int_value=1), array()),
        kvlist(k=AnyValue(string_value="v")),
    ),
    "nested kvlist": kvlist(
        a=kvlist(b=array(AnyValue(int_value=1), kvlist(c=AnyValue(bytes_value=b"\xff")))),
        d=AnyValue(double_value=math.nan),
    ),
    'kvlist whose only key is "@bytes"': kvlist_of({"@bytes": AnyValue(string_value="AAAA")}),
    'kvlist whose only key is "@double"': kvlist_of({"@double": AnyValue(string_value="NaN")}),
    'kvlist whose only key is "@kvlist"': kvlist_of(
        {"@kvlist": kvlist_of({"@bytes": AnyValue(string_value="x")})}
    ),
    'kvlist with "@bytes" and another key': kvlist_of(
        {"@bytes": AnyValue(string_value="AAAA"), "other": AnyValue(int_value=1)}
    ),
}


@pytest.mark.parametrize("value", ROUND_TRIP_CASES.values(), ids=ROUND_TRIP_CASES.keys())
def test_any_value_round_trips_through_json(value: AnyValue) -> None:
    """Every AnyValue kind survives any_value_to_json -> orjson -> json_to_any_value unchanged."""
    back = through_database(value)
    assert canonical_nan(back) == canonical_nan(value)
    assert back.WhichOneof("value") == value.WhichOneof("value")
    if value.WhichOneof("value") == "double_value":
        # Bitwise: keeps the sign of -0.0 and tells NaN from the infinities.
        assert math.copysign(1.0, back.double_value) == math.copysign(1.0, value.double_value)


def test_kvlist_entry_with_empty_value_round_trips() -> None:
    """A kvlist entry whose value is an empty AnyValue keeps its (present, empty) value.

    This is what the SDK encoders send (`KeyValue(key=k, value=AnyValue())`); the rebuilt
    message must equal the received one.
    """
    value = kvlist_of({"unset": AnyValue()})
    assert value.kvlist_value.values[0].HasField("value")
    assert through_database(value) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (AnyValue(string_value="s"), "s"),
        (AnyValue(int_value=INT64_MIN), INT64_MIN),
        (AnyValue(bool_value=False), False),
        (AnyValue(double_value=0.5), 0.5),
        (AnyValue(double_value=math.nan), {"@double": "NaN"}),
        (AnyValue(double_value=math.inf), {"@double": "Infinity"}),
        (AnyValue(double_value=-math.inf), {"@double": "-Infinity"}),
        (AnyValue(bytes_value=b"\x00\x01\xff"), {"@bytes": "AAH/"}),
        (AnyValue(), None),
        (array(AnyValue(int_value=1), AnyValue()), [1, None]),
        (kvlist(a=AnyValue(int_value=1), b=AnyValue(bool_value=True)), {"a": 1, "b": True}),
        (
            kvlist_of({"@bytes": AnyValue(string_value="x")}),
            {"@kvlist": {"@bytes": "x"}},
        ),
    ],
)
def test_json_form_of_values(value: AnyValue, expected: object) -> None:
    """The stored JSON form is plain where JSON can carry the value, and tagged where not."""
    assert any_value_to_json(value, NO_LIMIT, Truncations()) == expected


def test_attributes_become_a_plain_object_and_round_trip() -> None:
    """Attributes are stored as `{key: value}` (filterable with @>), and rebuild to KeyValues."""
    attributes = [
        KeyValue(key="http.route", value=AnyValue(string_value="/pay")),
        KeyValue(key="http.status_code", value=AnyValue(int_value=503)),
        KeyValue(key="retry", value=AnyValue(bool_value=True)),
        KeyValue(key="ratio", value=AnyValue(double_value=0.25)),
        KeyValue(key="@bytes", value=AnyValue(bytes_value=b"\x01")),
        KeyValue(key="tags", value=array(AnyValue(string_value="a"))),
    ]
    cuts = Truncations()
    stored, dropped = attributes_to_json(attributes, NO_LIMIT, NO_LIMIT, cuts)
    assert (dropped, bool(cuts)) == (0, False)
    assert orjson.loads(dumps(stored)) == {
        "http.route": "/pay",
        "http.status_code": 503,
        "retry": True,
        "ratio": 0.25,
        "@bytes": {"@bytes": "AQ=="},
        "tags": ["a"],
    }
    rebuilt = KeyValueList()
    json_to_attributes(orjson.loads(dumps(stored)), rebuilt.values)
    assert list(rebuilt.values) == attributes


def test_attribute_count_limit_drops_the_extra_keys() -> None:
    """Past `max_count` distinct keys, new keys are dropped and counted; repeated keys still update."""
    attributes = [
        KeyValue(key="a", value=AnyValue(int_value=1)),
        KeyValue(key="b", value=AnyValue(int_value=2)),
        KeyValue(key="c", value=AnyValue(int_value=3)),
        KeyValue(key="a", value=AnyValue(int_value=4)),
        KeyValue(key="d", value=AnyValue(double_value=5.0)),
    ]
    cuts = Truncations()
    stored, dropped = attributes_to_json(attributes, NO_LIMIT, 2, cuts)
    assert stored == {"a": 4, "b": 2}
    assert dropped == 2
    assert (cuts.dropped_attributes, cuts.truncated_values) == (2, 0)


def test_value_length_limit_truncates_strings_and_bytes_at_any_depth() -> None:
    """Strings (in characters) and bytes (in bytes) longer than the limit are cut and counted."""
    attributes = [
        KeyValue(key="s", value=AnyValue(string_value="ééééé")),
        KeyValue(key="exact", value=AnyValue(string_value="abc")),
        KeyValue(key="b", value=AnyValue(bytes_value=b"\x01\x02\x03\x04")),
        KeyValue(key="nested", value=array(kvlist(x=AnyValue(string_value="abcdef")))),
        KeyValue(key="n", value=AnyValue(int_value=123456789)),
    ]
    cuts = Truncations()
    stored, dropped = attributes_to_json(attributes, 3, NO_LIMIT, cuts)
    assert stored == {
        "s": "ééé",
        "exact": "abc",
        "b": {"@bytes": base64.b64encode(b"\x01\x02\x03").decode()},
        "nested": [{"x": "abc"}],
        "n": 123456789,
    }
    assert dropped == 0
    assert (cuts.truncated_values, cuts.dropped_attributes) == (3, 0)
    assert cuts


def test_dumps_replaces_escaped_nul_in_strings_and_keys() -> None:
    """PostgreSQL jsonb rejects \\u0000, so dumps() turns every real NUL into U+FFFD."""
    data = dumps({"k\x00ey": ["\x00", "a\x00b\x00", "\\\x00", "\\\\\x00"]})
    assert_pg_json(data)
    assert orjson.loads(data) == {
        "k\ufffdey": ["\ufffd", "a\ufffdb\ufffd", "\\\ufffd", "\\\\\ufffd"]
    }


def test_dumps_leaves_literal_backslash_u0000_text_alone() -> None:
    """A string holding the six characters \\u0000 is text, not a NUL, and is stored as given."""
    literal = ["\\u0000", "\\\\u0000", "x\\u0000\x00"]
    data = dumps(literal)
    assert_pg_json(data)
    assert orjson.loads(data) == ["\\u0000", "\\\\u0000", "x\\u0000\ufffd"]


def test_dumps_without_nul_is_orjson() -> None:
    """Without NULs, dumps() is exactly orjson's output."""
    value = {"a": ["\\", "\n", 1.5, None, "é"]}
    assert dumps(value) == orjson.dumps(value)


def test_text_replaces_nul() -> None:
    """text() makes a str safe for a PostgreSQL text column by replacing U+0000 with U+FFFD."""
    assert text("a\x00b\x00") == "a\ufffdb\ufffd"
    assert text("\\u0000") == "\\u0000"
    assert text("plain") == "plain"


# --- properties -------------------------------------------------------------------------

TEXTS = st.one_of(
    st.text(max_size=6),
    st.text(alphabet='\x00\\u0"é😀a', max_size=6),
    st.sampled_from(["\x00", "\\u0000", "\\\x00", "a\x00b"]),
)
KEYS = st.one_of(st.sampled_from(["@bytes", "@double", "@kvlist", ""]), TEXTS)
SCALARS = st.one_of(
    TEXTS.map(lambda s: AnyValue(string_value=s)),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
    st.integers(INT64_MIN, INT64_MAX).map(lambda i: AnyValue(int_value=i)),
    st.floats().map(lambda f: AnyValue(double_value=f)),
    st.binary(max_size=6).map(lambda b: AnyValue(bytes_value=b)),
    st.builds(AnyValue),
)
ANY_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda items: array(*items)),
        st.dictionaries(KEYS, children, max_size=3).map(kvlist_of),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(ANY_VALUES)
def test_random_values_round_trip_losslessly(value: AnyValue) -> None:
    """Any nested AnyValue (unique kvlist keys) round-trips through JSON; NaNs stay NaN."""
    assert canonical_nan(through_database(value)) == canonical_nan(value)


@settings(max_examples=200, deadline=None)
@given(ANY_VALUES)
def test_random_values_dump_to_json_postgresql_accepts(value: AnyValue) -> None:
    """dumps() of any converted value is JSON that jsonb accepts (no escaped NUL)."""
    assert_pg_json(dumps(any_value_to_json(value, NO_LIMIT, Truncations())))
