"""What the store's modules share: the connection type and time conversions in SQL.

Queries are codec-independent: times go in and out as bigint microseconds since the Unix
epoch, JSON comes out as text and uuids as bytea, so they behave the same on a plain
asyncpg connection and on the receiver's writer pool (whose codecs differ).
"""

from __future__ import annotations

import asyncpg

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


def us(column: str) -> str:
    """SQL: a timestamptz column as bigint microseconds since the Unix epoch."""
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


def ts(param: int) -> str:
    """SQL: parameter $param (bigint microseconds since the Unix epoch) as a timestamptz."""
    return f"(timestamptz 'epoch' + ${param}::bigint * interval '1 microsecond')"
