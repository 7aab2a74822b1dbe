"""AnyValue and attribute conversion: OTLP -> JSON-ready Python values, with limits applied.

Attributes become a plain JSON object `{key: value}` so that SQL can filter on them
(`attributes @> '{"http.route": "/pay"}'`). The few OTLP values JSON cannot carry
exactly are tagged, so that the query side can rebuild the original AnyValue:

    bytes          -> {"@bytes": "<base64>"}
    NaN / +-Inf    -> {"@double": "NaN" | "Infinity" | "-Infinity"}
    -0.0, and whole doubles >= 1e15 (jsonb would print them as integers) -> {"@double": repr}
    a kvlist whose only key is one of these tags -> {"@kvlist": {...}}

An AnyValue with nothing set becomes null.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

TAGS = frozenset({"@bytes", "@double", "@kvlist"})
LARGE_WHOLE_DOUBLE = 1e15

JSON = Any  # a JSON-ready value: None, bool, int, float, str, list, dict


class Truncations:
    """Counts what limits cut, so it can be reported as a partial-success warning."""

    __slots__ = ("dropped_attributes", "truncated_values")

    def __init__(self) -> None:
        self.truncated_values = 0
        self.dropped_attributes = 0

    def __bool__(self) -> bool:
        return bool(self.truncated_values or self.dropped_attributes)


def double_to_json(number: float) -> JSON:
    """A double as JSON. Tagged where JSON (or PostgreSQL's jsonb numeric) would not give the
    same double back: NaN and infinities, -0.0, and whole numbers of 1e15 or more (which
    jsonb prints as integers, so they would come back as int_value)."""
    if not math.isfinite(number):
        return {
            "@double": "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
        }
    if number == 0 and math.copysign(1.0, number) < 0:
        return {"@double": "-0.0"}
    if abs(number) >= LARGE_WHOLE_DOUBLE and number.is_integer():
        return {"@double": repr(number)}
    return number


def any_value_to_json(value: AnyValue, max_length: int, cuts: Truncations) -> JSON:
    """Convert one AnyValue (of any kind, nested) to a JSON-ready value."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        text = value.string_value
        if len(text) > max_length:
            cuts.truncated_values += 1
            return text[:max_length]
        return text
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return double_to_json(value.double_value)
    if kind == "array_value":
        return [any_value_to_json(item, max_length, cuts) for item in value.array_value.values]
    if kind == "kvlist_value":
        mapping = {
            kv.key: any_value_to_json(kv.value, max_length, cuts)
            for kv in value.kvlist_value.values
        }
        if len(mapping) == 1 and next(iter(mapping)) in TAGS:
            return {"@kvlist": mapping}
        return mapping
    if kind == "bytes_value":
        raw = value.bytes_value
        if len(raw) > max_length:
            cuts.truncated_values += 1
            raw = raw[:max_length]
        return {"@bytes": base64.b64encode(raw).decode("ascii")}
    return None


def attributes_to_json(
    attributes: Sequence[KeyValue], max_length: int, max_count: int, cuts: Truncations
) -> tuple[dict[str, JSON], int]:
    """Convert attributes to a dict; return it with the number dropped by the count limit."""
    if not attributes:
        return {}, 0
    if len(attributes) > max_count:
        return _limited_attributes_to_json(attributes, max_length, max_count, cuts)
    # The hot path of ingestion (about ten attributes per span): kept flat on purpose.
    result: dict[str, JSON] = {}
    for kv in attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "string_value":
            text = value.string_value
            if len(text) > max_length:
                cuts.truncated_values += 1
                text = text[:max_length]
            result[kv.key] = text
        elif kind == "int_value":
            result[kv.key] = value.int_value
        elif kind == "bool_value":
            result[kv.key] = value.bool_value
        else:
            result[kv.key] = any_value_to_json(value, max_length, cuts)
    return result, 0


def _limited_attributes_to_json(
    attributes: Sequence[KeyValue], max_length: int, max_count: int, cuts: Truncations
) -> tuple[dict[str, JSON], int]:
    """Over the count limit: keep the first `max_count` distinct keys, count the rest dropped."""
    result: dict[str, JSON] = {}
    dropped = 0
    for kv in attributes:
        if len(result) >= max_count and kv.key not in result:
            dropped += 1
            continue
        result[kv.key] = any_value_to_json(kv.value, max_length, cuts)
    cuts.dropped_attributes += dropped
    return result, dropped


def json_to_any_value(data: JSON, out: AnyValue) -> None:
    """Inverse of `any_value_to_json` (without truncation): fill `out` from stored JSON."""
    if data is None:
        return
    if isinstance(data, bool):
        out.bool_value = data
    elif isinstance(data, int):
        out.int_value = data
    elif isinstance(data, float):
        out.double_value = data
    elif isinstance(data, str):
        out.string_value = data
    elif isinstance(data, list):
        array = out.array_value
        array.SetInParent()
        for item in data:
            json_to_any_value(item, array.values.add())
    elif isinstance(data, dict):
        if len(data) == 1:
            ((tag, inner),) = data.items()
            if tag == "@bytes":
                out.bytes_value = base64.b64decode(inner)
                return
            if tag == "@double":
                out.double_value = float(inner.replace("Infinity", "inf"))
                return
            if tag == "@kvlist":
                data = inner
        kvlist = out.kvlist_value
        kvlist.SetInParent()
        for key, item in data.items():
            kv = kvlist.values.add(key=key)
            # Senders always set KeyValue.value, even to an empty AnyValue (stored as null).
            kv.value.SetInParent()
            json_to_any_value(item, kv.value)
    else:  # pragma: no cover - stored JSON has no other kinds
        raise TypeError(f"unexpected JSON value {data!r}")


def json_to_attributes(data: dict[str, JSON], out: Any) -> None:
    """Fill a repeated KeyValue field from a stored attributes object."""
    for key, item in data.items():
        value = out.add(key=key).value
        value.SetInParent()
        json_to_any_value(item, value)
