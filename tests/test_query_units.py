"""Pure parts of the query API: request validation, page tokens, terminal argument parsers."""

from __future__ import annotations

import argparse
import math

import orjson
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from test_query_server import kv

from prodsentinel.v1 import query_pb2
from receiver.errors import InvalidRequestError
from receiver.query import pagination, validation
from receiver.query.pagination import LogCursor, NameCursor, OffsetCursor, TraceCursor
from receiver.query.terminal import parse_attribute, parse_duration, parse_severity, parse_time

SECOND = 1_000_000_000
DAY = 86_400 * SECOND


def _ts(nanos: int) -> Timestamp:
    value = Timestamp()
    value.FromNanoseconds(nanos)
    return value


def _field(error: pytest.ExceptionInfo[InvalidRequestError]) -> str:
    return error.value.field


# --------------------------------------------------------------------------- validation


def test_trace_id_accepts_either_case_and_gives_bytes() -> None:
    """32 hex characters of either case parse to the same 16 bytes."""
    raw = bytes(range(16))
    assert validation.parse_trace_id(raw.hex()) == raw
    assert validation.parse_trace_id(raw.hex().upper()) == raw


@pytest.mark.parametrize("bad", ["", "0" * 31, "g" * 32, "0x" + "0" * 30, "é" * 32])
def test_trace_id_rejects_anything_else(bad: str) -> None:
    """Wrong lengths and non-hex characters are refused, naming the field given."""
    with pytest.raises(InvalidRequestError) as caught:
        validation.parse_trace_id(bad, "links[0].trace_id")
    assert _field(caught) == "links[0].trace_id"


@pytest.mark.parametrize(
    ("requested", "expected"), [(0, 20), (1, 1), (20, 20), (100, 100), (101, 100), (10**9, 100)]
)
def test_page_size_defaults_and_is_capped(requested: int, expected: int) -> None:
    """0 means the default, above the maximum means the maximum (AIP-158)."""
    assert validation.page_size(requested, validation.TRACES_PAGE) == expected


def test_seven_day_window_is_the_largest() -> None:
    """Exactly 7 days is accepted; a nanosecond more names end_time."""
    request = query_pb2.FindTracesRequest(start_time=_ts(DAY), end_time=_ts(8 * DAY))
    assert validation.find_traces(request).window == validation.TimeRange(DAY, 8 * DAY)
    request.end_time.CopyFrom(_ts(8 * DAY + 1))
    with pytest.raises(InvalidRequestError) as caught:
        validation.find_traces(request)
    assert _field(caught) == "end_time"


def test_timestamps_beyond_bigint_nanoseconds_are_refused() -> None:
    """Times PostgreSQL's bigint nanoseconds cannot hold (after 2262) name the field."""
    request = query_pb2.SearchLogsRequest(
        start_time=Timestamp(seconds=10**10), end_time=Timestamp(seconds=10**10 + 1)
    )
    with pytest.raises(InvalidRequestError) as caught:
        validation.search_logs(request)
    assert _field(caught) == "start_time"


def test_default_catalog_window_is_the_seven_days_before_now() -> None:
    """GetServices without times looks at [now - 7 days, now); with an end, 7 days before it."""
    now = 100 * DAY
    query = validation.get_services(query_pb2.GetServicesRequest(), now)
    assert query.window == validation.TimeRange(now - 7 * DAY, now)
    ended = validation.get_services(query_pb2.GetServicesRequest(end_time=_ts(50 * DAY)), now)
    assert ended.window == validation.TimeRange(43 * DAY, 50 * DAY)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("502", '"502"'),
        (502, "502"),
        (True, "true"),
        (0.25, "0.25"),
        (math.nan, '{"@double":"NaN"}'),
        (b"\x01", '{"@bytes":"AQ=="}'),
        ([1, "a"], '[1,"a"]'),
        ({"@bytes": "x"}, '{"@kvlist":{"@bytes":"x"}}'),
    ],
)
def test_attribute_filters_use_the_stored_json_encoding(value: object, stored: str) -> None:
    """A filter value is encoded exactly as the mapping stores attributes, so equality
    in SQL compares like with like for every AnyValue kind."""
    (item,) = validation.attribute_filters([kv("k", value)])
    assert item == validation.AttributeFilter("k", stored)


def test_attribute_filter_values_are_never_truncated() -> None:
    """A long filter value is compared whole (storage truncates at its limit, but a
    filter must not silently match a different, shorter value)."""
    (item,) = validation.attribute_filters([kv("k", "x" * 100_000)])
    assert len(orjson.loads(item.value_json)) == 100_000


def test_attribute_filter_needs_a_value() -> None:
    """A KeyValue without a value names attributes[i].value."""
    with pytest.raises(InvalidRequestError) as caught:
        validation.attribute_filters([kv("a", 1), KeyValue(key="b", value=AnyValue())])
    assert _field(caught) == "attributes[1].value"


@pytest.mark.parametrize(
    ("hours", "step_seconds"), [(1, 30), (2, 60), (24, 720), (168, 5040), (1 / 3600, 1)]
)
def test_automatic_step_gives_about_120_points(hours: float, step_seconds: int) -> None:
    """Without a step, the range is cut into 120 steps rounded up to whole seconds."""
    request = query_pb2.QueryMetricsRequest(
        metric_name="m",
        start_time=_ts(DAY),
        end_time=_ts(DAY + round(hours * 3600 * SECOND)),
        aggregation=query_pb2.AGGREGATION_AVG,
    )
    assert validation.query_metrics(request).step_ns == step_seconds * SECOND


def test_negative_durations_are_refused() -> None:
    """A Duration adds its nanos to its seconds; a negative total names the field."""
    request = query_pb2.FindTracesRequest(
        start_time=_ts(DAY), end_time=_ts(2 * DAY), min_duration=Duration(seconds=1, nanos=-5)
    )
    assert validation.find_traces(request).min_duration_ns == SECOND - 5
    request.min_duration.CopyFrom(Duration(seconds=-1))
    with pytest.raises(InvalidRequestError) as caught:
        validation.find_traces(request)
    assert _field(caught) == "min_duration"


# --------------------------------------------------------------------------- pagination

cursors = st.one_of(
    st.builds(TraceCursor, st.integers(0, 2**62), st.binary(min_size=16, max_size=16)),
    st.builds(LogCursor, st.integers(0, 2**62), st.integers(0, 2**63 - 1), st.uuids().map(str)),
    st.builds(NameCursor, st.text(), st.integers(-1, 2**31)),
    st.builds(OffsetCursor, st.integers(0, 2**40)),
)


@given(cursor=cursors, fingerprint=st.text(alphabet="0123456789abcdef", min_size=16, max_size=16))
def test_tokens_round_trip(cursor: pagination.Cursor, fingerprint: str) -> None:
    """Any cursor encodes to a URL-safe token that decodes to the same cursor."""
    token = pagination.encode(cursor, fingerprint)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert pagination.decode(token, type(cursor), fingerprint) == cursor


def test_token_of_another_list_or_request_is_refused() -> None:
    """A token is bound to its list kind and to the request's filters."""
    token = pagination.encode(OffsetCursor(5), "f1")
    for expected, fingerprint, message in (
        (TraceCursor, "f1", "another list"),
        (OffsetCursor, "f2", "other filters"),
    ):
        with pytest.raises(InvalidRequestError, match=message) as caught:
            pagination.decode(token, expected, fingerprint)
        assert _field(caught) == "page_token"


@pytest.mark.parametrize("token", ["%%%", "e30", "eyJ2IjoxfQ", "W10"])
def test_damaged_tokens_are_invalid_arguments(token: str) -> None:
    """Garbage, {} , a bare version and a JSON list are all refused on page_token."""
    with pytest.raises(InvalidRequestError) as caught:
        pagination.decode(token, OffsetCursor, "f")
    assert _field(caught) == "page_token"


def test_fingerprint_ignores_paging_fields_only() -> None:
    """Changing page_size or page_token keeps the fingerprint; changing a filter does not."""
    request = query_pb2.FindTracesRequest(service_name="a", page_size=5)
    other_page = query_pb2.FindTracesRequest(service_name="a", page_size=9, page_token="t")
    other_filter = query_pb2.FindTracesRequest(service_name="b", page_size=5)
    assert pagination.fingerprint(request) == pagination.fingerprint(other_page)
    assert pagination.fingerprint(request) != pagination.fingerprint(other_filter)


# --------------------------------------------------------------------------- terminal


@pytest.mark.parametrize(
    ("text", "nanos"),
    [("250ms", 250_000_000), ("1.5s", 1_500_000_000), ("1h30m", 5_400 * SECOND), ("7d", 7 * DAY)],
)
def test_durations_parse(text: str, nanos: int) -> None:
    """Go-style durations, combined units included."""
    assert parse_duration(text) == nanos


@pytest.mark.parametrize("text", ["", "5", "5 s", "1x", "s5"])
def test_bad_durations_are_argument_errors(text: str) -> None:
    """Anything else is an argparse error (a usage message, not a traceback)."""
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_times_default_to_utc() -> None:
    """ISO 8601 without an offset is UTC; with one, it is honoured."""
    assert parse_time("1970-01-02T00:00:00") == DAY
    assert parse_time("1970-01-02T01:00:00+01:00") == DAY


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("http.status_code=502", "http.status_code", AnyValue(int_value=502)),
        ('code="502"', "code", AnyValue(string_value="502")),
        ("ok=true", "ok", AnyValue(bool_value=True)),
        ("route=/pay", "route", AnyValue(string_value="/pay")),
        ("eq=a=b", "eq", AnyValue(string_value="a=b")),
    ],
)
def test_attribute_arguments_are_typed_like_json(text: str, key: str, value: AnyValue) -> None:
    """VALUE is JSON when it parses (so numbers and booleans match typed attributes),
    text otherwise."""
    assert parse_attribute(text) == KeyValue(key=key, value=value)


def test_severity_names_and_numbers() -> None:
    """Names map to the first number of their range; numbers 1-24 pass; others fail."""
    assert [parse_severity(s) for s in ("warn", "ERROR", "3")] == [13, 17, 3]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_severity("loud")
    with pytest.raises(argparse.ArgumentTypeError):
        parse_severity("25")
