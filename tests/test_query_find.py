"""FindTraces against a real receiver: each filter, summaries, pagination, bad requests.

Spans are exported through the receiver (raw OTLP, for exact times and durations; the
SDK for one end-to-end search), then searched with a real gRPC client.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from test_query_server import SECOND, as_tenant, export_spans, kv, simple_spans, status_details

from prodsentinel.v1 import query_pb2

pytest_plugins = ["test_query_server"]

MS = 1_000_000
MINUTE = 60 * SECOND


def ts(unix_nano: int) -> Timestamp:
    value = Timestamp()
    value.FromNanoseconds(unix_nano)
    return value


def dur(nanos: int) -> Duration:
    value = Duration()
    value.FromNanoseconds(nanos)
    return value


def window(start: int, end: int, **filters: Any) -> query_pb2.FindTracesRequest:
    return query_pb2.FindTracesRequest(start_time=ts(start), end_time=ts(end), **filters)


class Shop:
    """Four traces around `base` (30 minutes ago):

    pay:    checkout "POST /pay" (200 ms, root) -> payments "charge" (150 ms, ERROR,
            amount=10, resource env=prod)
    cart:   checkout "GET /cart" (10 ms)
    search: search "GET /search" (5 s, http.route=/search)
    old:    checkout "POST /pay" two hours before base
    """

    def __init__(self) -> None:
        self.base = time.time_ns() - 30 * MINUTE
        self.ids = {name: os.urandom(16) for name in ("pay", "cart", "search", "old")}
        self.root_id = os.urandom(8)

    def request(self) -> Any:
        base, ids = self.base, self.ids
        return simple_spans(
            [
                {"service": "checkout", "name": "POST /pay", "trace_id": ids["pay"],
                 "span_id": self.root_id, "start": base, "duration": 200 * MS},
                {"service": "payments", "name": "charge", "trace_id": ids["pay"],
                 "parent": self.root_id, "start": base + 20 * MS, "duration": 150 * MS,
                 "kind": 3, "error": True, "attributes": {"amount": 10},
                 "resource": {"env": "prod"}},
                {"service": "checkout", "name": "GET /cart", "trace_id": ids["cart"],
                 "start": base + SECOND, "duration": 10 * MS},
                {"service": "search", "name": "GET /search", "trace_id": ids["search"],
                 "start": base + 2 * SECOND, "duration": 5 * SECOND,
                 "attributes": {"http.route": "/search"}},
                {"service": "checkout", "name": "POST /pay", "trace_id": ids["old"],
                 "start": base - 120 * MINUTE, "duration": 200 * MS},
            ]
        )  # fmt: skip

    def around(self, **filters: Any) -> query_pb2.FindTracesRequest:
        """The ten minutes around base."""
        return window(self.base - 5 * MINUTE, self.base + 5 * MINUTE, **filters)

    def names(self, response: query_pb2.FindTracesResponse) -> list[str]:
        by_id = {trace_id.hex(): name for name, trace_id in self.ids.items()}
        return [by_id[summary.trace_id] for summary in response.traces]


@pytest.fixture
async def shop(receiver, tenant) -> Shop:
    data = Shop()
    await export_spans(receiver.port, tenant, data.request())
    return data


async def test_window_returns_traces_newest_match_first(shop, query, tenant) -> None:
    """Without filters, every trace with a span in the window, newest matching span
    first; the trace two hours earlier is outside."""
    response = await query.FindTraces(shop.around(), metadata=as_tenant(tenant))
    assert shop.names(response) == ["search", "cart", "pay"]
    assert response.next_page_token == ""


async def test_summary_describes_the_whole_trace(shop, query, tenant) -> None:
    """A trace found through a child span is summarised whole: root service and span
    name, start (ns), duration to the last span end, span and error counts, services."""
    response = await query.FindTraces(
        shop.around(service_name="payments"), metadata=as_tenant(tenant)
    )
    (summary,) = response.traces
    assert summary.trace_id == shop.ids["pay"].hex()
    assert (summary.root_service_name, summary.root_span_name) == ("checkout", "POST /pay")
    assert summary.start_time.ToNanoseconds() == shop.base
    assert summary.duration.ToNanoseconds() == 200 * MS
    assert (summary.span_count, summary.error_count) == (2, 1)
    assert list(summary.service_names) == ["checkout", "payments"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"service_name": "checkout"}, ["cart", "pay"]),
        ({"service_name": "checkout", "operation_name": "POST /pay"}, ["pay"]),
        ({"operation_name": "GET /search"}, ["search"]),
        ({"service_name": "nobody"}, []),
        ({"attributes": [kv("amount", 10)]}, ["pay"]),
        ({"attributes": [kv("amount", "10")]}, []),  # typed equality: a string is not 10
        ({"attributes": [kv("env", "prod")]}, ["pay"]),  # a resource attribute
        ({"attributes": [kv("env", "prod"), kv("amount", 11)]}, []),
        ({"attributes": [kv("http.route", "/search")], "service_name": "search"}, ["search"]),
        ({"min_duration": dur(1 * SECOND)}, ["search"]),
        ({"max_duration": dur(10 * MS)}, ["cart"]),
        ({"min_duration": dur(150 * MS), "max_duration": dur(150 * MS)}, ["pay"]),
        ({"errors_only": True}, ["pay"]),
        ({"errors_only": True, "service_name": "checkout"}, []),  # one span must match all
    ],
)
async def test_each_filter(shop, query, tenant, filters, expected) -> None:
    """Each filter narrows the traces to those with one span matching all filters."""
    response = await query.FindTraces(shop.around(**filters), metadata=as_tenant(tenant))
    assert shop.names(response) == expected


async def test_time_range_selects_by_span_start(shop, query, tenant) -> None:
    """The window is [start_time, end_time) on span start times, to the nanosecond."""
    base = shop.base
    old = window(base - 121 * MINUTE, base - 119 * MINUTE)
    assert shop.names(await query.FindTraces(old, metadata=as_tenant(tenant))) == ["old"]
    exact = window(base + SECOND, base + SECOND + 1)
    assert shop.names(await query.FindTraces(exact, metadata=as_tenant(tenant))) == ["cart"]
    before = window(base + SECOND - 1, base + SECOND)
    assert shop.names(await query.FindTraces(before, metadata=as_tenant(tenant))) == []


async def test_other_tenants_traces_are_invisible(shop, query, tenant) -> None:
    """The same search under another tenant finds nothing of this tenant's."""
    response = await query.FindTraces(shop.around(), metadata=as_tenant(f"{tenant}-b"))
    assert list(response.traces) == []


async def _all_pages(query, tenant, request) -> list[list[str]]:
    pages = []
    while True:
        response = await query.FindTraces(request, metadata=as_tenant(tenant))
        pages.append([summary.trace_id for summary in response.traces])
        if not response.next_page_token:
            return pages
        request.page_token = response.next_page_token


async def test_pages_return_every_trace_once(receiver, query, tenant) -> None:
    """Paging through 23 traces whose spans interleave in time (each trace has spans
    minutes apart) returns each trace exactly once, newest matching span first, in pages
    of at most page_size, the last one without a token."""
    base = time.time_ns() - 60 * MINUTE
    specs, newest = [], {}
    for index in range(23):
        trace_id = os.urandom(16)
        times = [base + index * SECOND + offset * MINUTE for offset in (0, 7, 3)]
        newest[trace_id.hex()] = max(times)
        specs += [
            {"service": f"svc{offset}", "name": "op", "trace_id": trace_id, "start": start}
            for offset, start in enumerate(times)
        ]
    await export_spans(receiver.port, tenant, simple_spans(specs))

    request = window(base - MINUTE, base + 20 * MINUTE, page_size=4)
    pages = await _all_pages(query, tenant, request)

    assert all(len(page) <= 4 for page in pages)
    returned = [trace_id for page in pages for trace_id in page]
    assert sorted(returned) == sorted(newest)
    assert returned == sorted(newest, key=lambda t: (newest[t], t), reverse=True)


async def test_a_trace_seen_again_on_a_later_page_is_not_repeated(receiver, query, tenant) -> None:
    """With one trace per page, a trace whose older spans come after another trace's
    (x at +10 min and +1 min, y at +5 min) is returned once: x, then y, then nothing."""
    base = time.time_ns() - 30 * MINUTE
    x, y = os.urandom(16), os.urandom(16)
    await export_spans(
        receiver.port,
        tenant,
        simple_spans(
            [
                {"service": "s", "name": "late", "trace_id": x, "start": base + 10 * MINUTE},
                {"service": "s", "name": "mid", "trace_id": y, "start": base + 5 * MINUTE},
                {"service": "s", "name": "early", "trace_id": x, "start": base + 1 * MINUTE},
            ]
        ),
    )
    pages = await _all_pages(query, tenant, window(base, base + 20 * MINUTE, page_size=1))
    assert [page for page in pages if page] == [[x.hex()], [y.hex()]]


def _sdk_trace(port: int | None, tenant: str) -> str:
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-shop"}))
    exporter = OTLPSpanExporter(
        endpoint=f"127.0.0.1:{port}", insecure=True, headers={"x-scope-orgid": tenant}
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop")
    try:
        with (
            tracer.start_as_current_span("checkout", attributes={"cart.items": 3}) as span,
            tracer.start_as_current_span("reserve", attributes={"sku": "A-1"}),
        ):
            pass
    finally:
        provider.shutdown()
    return f"{span.get_span_context().trace_id:032x}"


async def test_sdk_trace_is_found_by_a_child_attribute(receiver, query, tenant) -> None:
    """A trace exported by the SDK is found by its child span's attribute and summarised
    with its root span."""
    trace_id = await asyncio.to_thread(_sdk_trace, receiver.port, tenant)
    now = time.time_ns()
    response = await query.FindTraces(
        window(now - MINUTE, now + MINUTE, attributes=[kv("sku", "A-1")]),
        metadata=as_tenant(tenant),
    )
    (summary,) = response.traces
    assert summary.trace_id == trace_id
    assert (summary.root_service_name, summary.root_span_name) == ("sdk-shop", "checkout")
    assert summary.span_count == 2


BASE = 1_800_000_000 * SECOND


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"start_time": None}, "start_time"),
        ({"end_time": None}, "end_time"),
        ({"start_time": ts(BASE), "end_time": ts(BASE)}, "end_time"),
        ({"start_time": ts(BASE), "end_time": ts(BASE - 1)}, "end_time"),
        ({"start_time": ts(BASE), "end_time": ts(BASE + 7 * 86_400 * SECOND + 1)}, "end_time"),
        ({"start_time": ts(-SECOND), "end_time": ts(BASE)}, "start_time"),
        ({"min_duration": dur(2 * SECOND), "max_duration": dur(SECOND)}, "max_duration"),
        ({"min_duration": dur(-1)}, "min_duration"),
        ({"page_size": -1}, "page_size"),
        ({"attributes": [kv("", 1)]}, "attributes[0].key"),
        ({"attributes": [kv("a", 1), query_pb2.FindTracesRequest().attributes.add(key="b")]},
         "attributes[1].value"),
        ({"attributes": [kv(f"k{n}", n) for n in range(17)]}, "attributes"),
        ({"page_token": "not-a-token"}, "page_token"),
        ({"service_name": "x" * 1025}, "service_name"),
    ],
)  # fmt: skip
async def test_bad_requests_name_the_field(query, tenant, request_fields, field) -> None:
    """Malformed, inverted, unbounded or too long ranges and bad filters get
    INVALID_ARGUMENT with a BadRequest naming the field."""
    fields = {"start_time": ts(BASE), "end_time": ts(BASE + SECOND), **request_fields}
    fields = {name: value for name, value in fields.items() if value is not None}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await query.FindTraces(query_pb2.FindTracesRequest(**fields), metadata=as_tenant(tenant))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [name for name, _ in status_details(caught.value)] == [field]


async def test_a_token_only_continues_its_own_search(shop, query, tenant) -> None:
    """A page token used with other filters is INVALID_ARGUMENT on page_token; with the
    same filters and another page size it continues."""
    first = await query.FindTraces(shop.around(page_size=1), metadata=as_tenant(tenant))
    assert first.next_page_token
    changed = shop.around(service_name="checkout", page_token=first.next_page_token)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await query.FindTraces(changed, metadata=as_tenant(tenant))
    assert [name for name, _ in status_details(caught.value)] == ["page_token"]
    rest = await query.FindTraces(
        shop.around(page_size=5, page_token=first.next_page_token), metadata=as_tenant(tenant)
    )
    assert shop.names(first) + shop.names(rest) == ["search", "cart", "pay"]
