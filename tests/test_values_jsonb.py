"""AnyValues survive a trip through a real PostgreSQL jsonb column exactly (kind and value)."""

from __future__ import annotations

import math

import asyncpg
import orjson
import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from receiver.mapping.common import dumps
from receiver.mapping.values import Truncations, any_value_to_json, json_to_any_value

DOUBLES = [1.0, -0.0, 0.5, 1e15, 1e16, 2.0**62, -(2.0**63), 1e300, 5e-324, math.inf, math.nan]


@pytest.mark.parametrize("number", DOUBLES, ids=repr)
async def test_doubles_come_back_as_the_same_double(db: asyncpg.Connection, number: float) -> None:
    """A double_value stored in jsonb reads back as a double_value with the same bits, even where
    jsonb's numeric would print it as an integer (1e16) or drop its sign (-0.0)."""
    stored = dumps(any_value_to_json(AnyValue(double_value=number), 100, Truncations()))
    text = await db.fetchval("SELECT $1::jsonb::text", stored.decode())
    back = AnyValue()
    json_to_any_value(orjson.loads(text), back)
    assert back.WhichOneof("value") == "double_value"
    if math.isnan(number):
        assert math.isnan(back.double_value)
    else:
        assert back.double_value == number
        assert math.copysign(1.0, back.double_value) == math.copysign(1.0, number)


@pytest.mark.parametrize("number", [0, -1, 2**53 + 1, 2**63 - 1, -(2**63)], ids=repr)
async def test_ints_come_back_as_the_same_int(db: asyncpg.Connection, number: int) -> None:
    """An int_value (any int64) reads back from jsonb as the same int_value."""
    stored = dumps(any_value_to_json(AnyValue(int_value=number), 100, Truncations()))
    back = AnyValue()
    json_to_any_value(
        orjson.loads(await db.fetchval("SELECT $1::jsonb::text", stored.decode())), back
    )
    assert back.WhichOneof("value") == "int_value"
    assert back.int_value == number
