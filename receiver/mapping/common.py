"""What every signal's mapping shares: resource and scope context, outcome bookkeeping, ids."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Generic, TypeVar

import orjson
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from receiver.mapping.values import Truncations, attributes_to_json
from receiver.settings import Limits

R = TypeVar("R")

UNKNOWN_SERVICE = "unknown_service"  # the SDK specification's default service.name
MAX_PROBLEMS_REPORTED = 5
TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8

MAX_UNIX_NANO = 2**63 - 1  # PostgreSQL bigint; fixed64 above this would fail a whole COPY

# PostgreSQL text and jsonb cannot hold U+0000. A NUL would fail the whole COPY batch,
# so it is replaced with U+FFFD (the replacement character) in text and in JSON.
_JSON_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def dumps(value: object) -> bytes:
    """JSON bytes for a jsonb column (orjson, with escaped NULs replaced)."""
    data = orjson.dumps(value)
    if b"\\u0000" in data:
        data = _JSON_NUL.sub(rb"\1\\ufffd", data)
    return data


def text(value: str) -> str:
    """A string safe for a PostgreSQL text column."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


@dataclasses.dataclass(slots=True)
class Mapped(Generic[R]):
    """Rows from one request, with what was rejected or cut and why (no exceptions for bad items)."""

    rows: list[R] = dataclasses.field(default_factory=list)
    rejected: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    cuts: Truncations = dataclasses.field(default_factory=Truncations)

    def reject(self, problem: str) -> None:
        self.rejected += 1
        if len(self.problems) < MAX_PROBLEMS_REPORTED:
            self.problems.append(problem)

    def error_message(self) -> str:
        """The partial-success message: first rejections, then a warning for truncations."""
        parts: list[str] = []
        if self.rejected:
            more = self.rejected - len(self.problems)
            parts.append(
                f"rejected {self.rejected}: "
                + "; ".join(self.problems)
                + (f"; and {more} more" if more > 0 else "")
            )
        if self.cuts:
            parts.append(
                f"warning: limits applied: {self.cuts.truncated_values} value(s) truncated, "
                f"{self.cuts.dropped_attributes} attribute(s) dropped"
            )
        return " | ".join(parts)


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceContext:
    """A resource, converted once per Resource{Spans,Logs,Metrics}."""

    service_name: str
    resource_json: bytes
    dropped_attributes_count: int
    schema_url: str
    identity: bytes  # deterministic bytes identifying the resource, for signal ids


@dataclasses.dataclass(frozen=True, slots=True)
class ScopeContext:
    """An instrumentation scope, converted once per Scope{Spans,Logs,Metrics}."""

    name: str
    version: str
    attributes_json: bytes
    dropped_attributes_count: int
    schema_url: str
    identity: bytes


def resource_context(
    resource: Resource, schema_url: str, limits: Limits, cuts: Truncations
) -> ResourceContext:
    attributes, dropped = attributes_to_json(
        resource.attributes, limits.attribute_value_length, limits.attribute_count, cuts
    )
    # Read from the request, not the limited copy: limits must not change the service.
    service = next(
        (kv.value.string_value for kv in resource.attributes if kv.key == "service.name"), None
    )
    return ResourceContext(
        service_name=text(service) if isinstance(service, str) and service else UNKNOWN_SERVICE,
        resource_json=dumps(attributes),
        dropped_attributes_count=resource.dropped_attributes_count + dropped,
        schema_url=text(schema_url),
        identity=resource.SerializeToString(deterministic=True),
    )


def scope_context(
    scope: InstrumentationScope, schema_url: str, limits: Limits, cuts: Truncations
) -> ScopeContext:
    attributes, dropped = attributes_to_json(
        scope.attributes, limits.attribute_value_length, limits.attribute_count, cuts
    )
    return ScopeContext(
        name=text(scope.name),
        version=text(scope.version),
        attributes_json=dumps(attributes),
        dropped_attributes_count=scope.dropped_attributes_count + dropped,
        schema_url=text(schema_url),
        identity=scope.SerializeToString(deterministic=True),
    )


def content_hasher(*parts: bytes) -> hashlib.blake2b:
    """A hasher primed with identity parts; `.copy()` it per item for content-derived signal ids."""
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        hasher.update(len(part).to_bytes(4, "little"))
        hasher.update(part)
    return hasher


def span_signal_id(trace_id: bytes, span_id: bytes) -> bytes:
    """A span's identity is (trace_id, span_id): a retried span gets the same signal id."""
    return hashlib.blake2b(trace_id + span_id, digest_size=16).digest()


def describe_id(raw: bytes) -> str:
    return raw.hex() if raw else "<empty>"
