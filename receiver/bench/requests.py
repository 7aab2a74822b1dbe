"""Realistic OTLP trace requests for the bench, pre-serialized so sending one costs little.

The load generator shares the machine with the receiver and PostgreSQL, so it does as
little as it can per request: requests are serialized once per template and a fresh
request is two `bytes.replace` calls that swap in new trace/span id prefixes.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

_SERVICES = (
    ("checkout", "2.4.1"),
    ("orders", "1.19.0"),
    ("payments", "3.0.7"),
    ("catalog", "0.9.12"),
    ("gateway", "5.2.0"),
)
_ROUTES = (
    ("GET", "/api/orders/{id}"),
    ("GET", "/api/orders"),
    ("POST", "/api/orders"),
    ("PUT", "/api/cart/{id}/items"),
    ("GET", "/api/products/{sku}"),
    ("POST", "/api/payments"),
    ("DELETE", "/api/cart/{id}"),
    ("GET", "/api/users/{id}/profile"),
)
_QUERIES = (
    ("SELECT", "orders", "SELECT * FROM orders WHERE id = $1"),
    ("INSERT", "order_items", "INSERT INTO order_items (order_id, sku, qty) VALUES ($1, $2, $3)"),
    ("UPDATE", "carts", "UPDATE carts SET updated_at = now() WHERE id = $1"),
    ("SELECT", "products", "SELECT sku, price FROM products WHERE sku = ANY($1)"),
)
_PEERS = ("payments.svc.cluster.local", "catalog.svc.cluster.local", "inventory.svc.cluster.local")
_USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
)
_SERVER, _CLIENT, _INTERNAL = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL


def _set_attributes(target: Any, values: dict[str, str | int | float | bool]) -> None:
    for key, value in values.items():
        attribute: KeyValue = target.add(key=key)
        if isinstance(value, bool):
            attribute.value.bool_value = value
        elif isinstance(value, int):
            attribute.value.int_value = value
        elif isinstance(value, float):
            attribute.value.double_value = value
        else:
            attribute.value.string_value = value


class _TemplateBuilder:
    """Builds one request of realistic traces whose ids all start with two marker prefixes."""

    def __init__(self, rng: random.Random, trace_marker: bytes, span_marker: bytes) -> None:
        self._rng = rng
        self._trace_marker = trace_marker
        self._span_marker = span_marker
        self._spans = 0
        self._parents = 0

    def build(self, spans: int, now_ns: int) -> tuple[bytes, int, int]:
        """(serialized request, spans, spans with a parent)."""
        rng = self._rng
        service, version = rng.choice(_SERVICES)
        resource_spans = ExportTraceServiceRequest().resource_spans.add()
        _set_attributes(
            resource_spans.resource.attributes,
            {
                "service.name": service,
                "service.version": version,
                "service.namespace": "shop",
                "deployment.environment": "production",
                "host.name": f"{service}-{rng.randrange(16**6):06x}",
                "process.pid": rng.randrange(2, 65_536),
                "telemetry.sdk.name": "opentelemetry",
                "telemetry.sdk.language": "python",
                "telemetry.sdk.version": "1.27.0",
            },
        )
        resource_spans.schema_url = "https://opentelemetry.io/schemas/1.26.0"
        scope = resource_spans.scope_spans.add()
        scope.scope.name, scope.scope.version = "opentelemetry.instrumentation.asgi", "0.48b0"
        trace_index = 0
        while self._spans < spans:
            trace_index += 1
            self._trace(scope.spans, trace_index, spans, now_ns)
        request = ExportTraceServiceRequest()
        request.resource_spans.append(resource_spans)
        return request.SerializeToString(), self._spans, self._parents

    def _trace(self, spans: Any, trace_index: int, limit: int, now_ns: int) -> None:
        rng = self._rng
        trace_id = self._trace_marker + trace_index.to_bytes(4, "big") + rng.randbytes(4)
        method, route = rng.choice(_ROUTES)
        failed = rng.random() < 0.03
        status_code = 500 if failed else rng.choice((200, 200, 200, 201, 204, 404))
        start = now_ns - rng.randrange(5_000_000_000)
        duration = rng.randrange(2_000_000, 400_000_000)
        root = self._span(spans, trace_id, None, f"{method} {route}", _SERVER, start, duration)
        _set_attributes(
            root.attributes,
            {
                "http.request.method": method,
                "http.route": route,
                "http.response.status_code": status_code,
                "url.path": route.replace("{id}", str(rng.randrange(10**6))).replace(
                    "{sku}", f"SKU-{rng.randrange(10**5):05d}"
                ),
                "url.scheme": "https",
                "server.address": "shop.example.com",
                "client.address": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                "user_agent.original": rng.choice(_USER_AGENTS),
                "enduser.id": f"user-{rng.randrange(10**7)}",
                "app.request_id": str(uuid.UUID(int=rng.getrandbits(128))),
            },
        )
        if failed:
            root.status.code, root.status.message = Status.STATUS_CODE_ERROR, "upstream failed"
            event = root.events.add(name="exception", time_unix_nano=start + duration - 1000)
            _set_attributes(
                event.attributes,
                {
                    "exception.type": "httpx.ReadTimeout",
                    "exception.message": "timed out reading from payments",
                    "exception.stacktrace": 'Traceback (most recent call last):\n  File "app/handlers.py", line 88, in pay\n    ...\nhttpx.ReadTimeout',
                },
            )
        offset = start
        for _child in range(rng.randrange(2, 12)):
            if self._spans >= limit:
                return
            offset += rng.randrange(100_000, max(200_000, duration // 12))
            length = rng.randrange(50_000, max(100_000, duration // 10))
            draw = rng.random()
            if draw < 0.15:
                name = rng.choice(("orders.load", "cart.price", "auth.check", "render"))
                child = self._span(spans, trace_id, root.span_id, name, _INTERNAL, offset, length)
                values: dict[str, str | int | float | bool] = {
                    "code.function": name.replace(".", "_"),
                    "code.namespace": f"shop.{name.partition('.')[0]}",
                    "thread.id": rng.randrange(1, 64),
                    "app.cache_hit": rng.random() < 0.7,
                    "app.items": rng.randrange(1, 40),
                }
            elif draw < 0.65:
                operation, table, statement = rng.choice(_QUERIES)
                child = self._span(
                    spans, trace_id, root.span_id, f"{operation} {table}", _CLIENT, offset, length
                )
                values = {
                    "db.system": "postgresql",
                    "db.name": "shop",
                    "db.operation": operation,
                    "db.sql.table": table,
                    "db.statement": statement,
                    "server.address": "orders-db.internal",
                    "server.port": 5432,
                    "db.rows_affected": rng.randrange(50),
                    "thread.id": rng.randrange(1, 64),
                    "code.function": f"repository.{operation.lower()}_{table}",
                }
            else:
                peer = rng.choice(_PEERS)
                child = self._span(spans, trace_id, root.span_id, "POST", _CLIENT, offset, length)
                values = {
                    "http.request.method": "POST",
                    "url.full": f"http://{peer}/v1/{rng.choice(('charge', 'reserve', 'lookup'))}",
                    "http.response.status_code": 200,
                    "net.peer.name": peer,
                    "server.port": 8080,
                    "http.request.body.size": rng.randrange(100, 4000),
                    "http.response.body.size": rng.randrange(100, 9000),
                    "network.protocol.version": "1.1",
                    "app.retry": rng.random() < 0.05,
                    "app.latency_budget_ms": round(rng.uniform(50, 500), 1),
                }
            _set_attributes(child.attributes, values)

    def _span(
        self,
        spans: Any,
        trace_id: bytes,
        parent: bytes | None,
        name: str,
        kind: int,
        start: int,
        duration: int,
    ) -> Span:
        self._spans += 1
        span: Span = spans.add(
            trace_id=trace_id,
            span_id=self._span_marker + self._spans.to_bytes(4, "big"),
            name=name,
            kind=kind,
            start_time_unix_nano=start,
            end_time_unix_nano=start + duration,
            flags=0x100 | 0x1,  # sampled; parent known to be local
        )
        if parent is not None:
            span.parent_span_id = parent
            self._parents += 1
        return span


@dataclasses.dataclass(frozen=True, slots=True)
class _Template:
    payload: bytes
    trace_needle: bytes
    span_needle: bytes


class RequestPool(Iterator[bytes]):
    """An endless supply of distinct serialized ExportTraceServiceRequests.

    Each is one of `templates` pre-serialized requests with fresh trace and span ids:
    every trace id starts with the template's 8-byte marker and every span id with its
    4-byte marker, so new ids are two `bytes.replace` calls (tens of microseconds),
    not a protobuf build. Ids never repeat, so the receiver never deduplicates.
    """

    def __init__(self, spans_per_request: int, *, templates: int = 8, seed: int = 0) -> None:
        if spans_per_request < 1:
            raise ValueError("spans_per_request must be >= 1")
        self.spans_per_request = spans_per_request
        rng = random.Random(seed)
        now_ns = time.time_ns()
        self._templates = [self._template(rng, spans_per_request, now_ns) for _ in range(templates)]
        self._next = itertools.cycle(self._templates)

    @staticmethod
    def _template(rng: random.Random, spans: int, now_ns: int) -> _Template:
        while True:  # a marker that also occurs outside the ids (astronomically rare): redraw
            trace_marker, span_marker = rng.randbytes(8), rng.randbytes(4)
            builder = _TemplateBuilder(rng, trace_marker, span_marker)
            payload, count, parents = builder.build(spans, now_ns)
            # Each needle is the field's tag and length byte plus the marker.
            trace_needle = b"\x0a\x10" + trace_marker
            span_needle = b"\x08" + span_marker  # length 8, after tag 0x12 or 0x22
            if (
                count == spans
                and payload.count(trace_needle) == count
                and payload.count(span_needle) == count + parents
                and payload.count(trace_marker) == count
                and payload.count(span_marker) == count + parents
            ):
                return _Template(payload, trace_needle, span_needle)

    def __next__(self) -> bytes:
        template = next(self._next)
        fresh = os.urandom(12)
        return template.payload.replace(template.trace_needle, b"\x0a\x10" + fresh[:8]).replace(
            template.span_needle, b"\x08" + fresh[8:]
        )
