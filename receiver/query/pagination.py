"""Opaque page tokens: where the previous page stopped, bound to the request that made it.

A token is URL-safe base64 of a small JSON document: the list it belongs to, a
fingerprint of the request's filters (page_token and page_size aside, as AIP-158 lets
the size change between pages) and a keyset cursor. Pages are keyset pages, never
offsets into SQL results, so a page costs the same however deep it is. Tokens are not
secret and need not be: the tenant always comes from the caller's metadata, so a token
can only move a cursor within the caller's own data.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from typing import Any, TypeVar, cast

import orjson
from google.protobuf.message import Message

from receiver.errors import InvalidRequestError

TOKEN_VERSION = 1
FIELD = "page_token"


@dataclasses.dataclass(frozen=True, slots=True)
class TraceCursor:
    """The last trace returned: its newest matching span's start (µs) and its id."""

    time_us: int
    trace_id: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class LogCursor:
    """The last record returned, by the (time, time_unix_nano, signal_id) order."""

    time_us: int
    time_ns: int
    signal_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class NameCursor:
    """The last service (kind unused) or operation (name, kind) returned."""

    name: str
    kind: int = -1


@dataclasses.dataclass(frozen=True, slots=True)
class OffsetCursor:
    """QueryMetrics: the series are computed whole, then sliced."""

    offset: int


Cursor = TraceCursor | LogCursor | NameCursor | OffsetCursor
C = TypeVar("C", TraceCursor, LogCursor, NameCursor, OffsetCursor)
_KINDS: dict[str, type[Cursor]] = {
    "traces": TraceCursor,
    "logs": LogCursor,
    "names": NameCursor,
    "series": OffsetCursor,
}


def fingerprint(request: Message) -> str:
    """A short hash of the request without its paging fields."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("page_token")
    copy.ClearField("page_size")
    return hashlib.blake2b(copy.SerializeToString(deterministic=True), digest_size=8).hexdigest()


def encode(cursor: Cursor, request_fingerprint: str) -> str:
    kind = next(name for name, cls in _KINDS.items() if isinstance(cursor, cls))
    values = [
        value.hex() if isinstance(value, bytes) else value for value in dataclasses.astuple(cursor)
    ]
    document = {"v": TOKEN_VERSION, "k": kind, "f": request_fingerprint, "c": values}
    return base64.urlsafe_b64encode(orjson.dumps(document)).rstrip(b"=").decode("ascii")


def decode(token: str, expected: type[C], request_fingerprint: str) -> C | None:
    """The cursor in `token` (None for an empty token); InvalidRequestError if it is not ours."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(FIELD, "is not a token this API returned") from None
    if not isinstance(document, dict) or document.get("v") != TOKEN_VERSION:
        raise InvalidRequestError(FIELD, "is not a token this API returned")
    if _KINDS.get(document.get("k", "")) is not expected:
        raise InvalidRequestError(FIELD, "belongs to another list")
    if document.get("f") != request_fingerprint:
        raise InvalidRequestError(FIELD, "was returned for a request with other filters")
    return _cursor(expected, document.get("c"))


def _cursor(expected: type[C], values: object) -> C:
    fields = dataclasses.fields(expected)
    if not isinstance(values, list) or len(values) != len(fields):
        raise InvalidRequestError(FIELD, "is damaged")
    converted: list[object] = []
    for field, value in zip(fields, values, strict=True):
        if field.type == "bytes" and isinstance(value, str):
            try:
                converted.append(bytes.fromhex(value))
            except ValueError:
                raise InvalidRequestError(FIELD, "is damaged") from None
        elif (field.type == "int" and type(value) is int) or (
            field.type == "str" and isinstance(value, str)
        ):
            converted.append(value)
        else:
            raise InvalidRequestError(FIELD, "is damaged")
    cursor: C = cast(Any, expected)(*converted)  # each field was type-checked above
    return cursor
