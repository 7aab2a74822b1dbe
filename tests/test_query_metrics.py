"""QueryMetrics against a real receiver: each aggregation per step and series, filters,
series pages and bad requests.

Points go in as raw OTLP through the receiver's MetricsService (exact times and values)
and through the SDK's OTLP metric exporter for one end-to-end check.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from test_query_find import MINUTE, ts
from test_query_server import SECOND, as_tenant, export_metrics, kv, status_details

from prodsentinel.v1 import query_pb2

pytest_plugins = ["test_query_server"]

Agg = query_pb2.Aggregation
DELTA, CUMULATIVE = 1, 2


def _add_metric(request: ExportMetricsServiceRequest, service: str, **fields: Any) -> Any:
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.append(kv("service.name", service))
    return resource_metrics.scope_metrics.add().metrics.add(**fields)


def _points(data: Any, points: list[tuple[int, dict[str, Any]]], start: int = 0) -> None:
    for time_ns, fields in points:
        attributes = fields.pop("attributes", {})
        point = data.data_points.add(time_unix_nano=time_ns, start_time_unix_nano=start, **fields)
        point.attributes.extend(kv(key, value) for key, value in attributes.items())


class Farm:
    """Metrics around W (a minute boundary 30 minutes ago), queried in 60 s steps."""

    def __init__(self) -> None:
        self.w = (time.time_ns() - 30 * MINUTE) // MINUTE * MINUTE

    def request(self) -> ExportMetricsServiceRequest:
        w, s = self.w, SECOND
        request = ExportMetricsServiceRequest()
        gauge = _add_metric(request, "node", name="cpu.temp", unit="Cel").gauge
        for core, values in (("0", [40.0, 42.0, 50.0, 54.0]), ("1", [30.0, 34.0, 36.0, 38.0])):
            _points(
                gauge,
                [
                    (w + i * 30 * s, {"as_double": v, "attributes": {"core": core}})
                    for i, v in enumerate(values)
                ],
            )
        _points(  # another service, same metric
            _add_metric(request, "other", name="cpu.temp").gauge,
            [(w + 10 * s, {"as_double": 99.0})],
        )
        counter = _add_metric(request, "api", name="requests").sum
        counter.is_monotonic, counter.aggregation_temporality = True, CUMULATIVE
        _points(
            counter,
            [(w - 30 * s, {"as_int": 0}), (w + 15 * s, {"as_int": 10}),
             (w + 45 * s, {"as_int": 30}), (w + 75 * s, {"as_int": 60})],
            start=w - 60 * s,
        )  # fmt: skip
        _points(counter, [(w + 105 * s, {"as_int": 5})], start=w + 100 * s)  # a restart
        delta = _add_metric(request, "api", name="bytes").sum
        delta.is_monotonic, delta.aggregation_temporality = True, DELTA
        _points(delta, [(w + 10 * s, {"as_int": 600}), (w + 20 * s, {"as_int": 600})])
        depth = _add_metric(request, "api", name="queue.depth").sum
        depth.aggregation_temporality = CUMULATIVE  # not monotonic
        _points(depth, [(w + 10 * s, {"as_double": 3.0})])
        histogram = _add_metric(request, "api", name="latency", unit="ms").histogram
        histogram.aggregation_temporality = DELTA
        bounds = [10.0, 100.0, 1000.0]
        _points(
            histogram,
            [
                (w + 20 * s, {"count": 6, "sum": 300.0, "min": 1.0, "max": 900.0,
                              "bucket_counts": [3, 2, 1, 0], "explicit_bounds": bounds}),
                (w + 40 * s, {"count": 4, "sum": 1500.0, "min": 2.0, "max": 950.0,
                              "bucket_counts": [2, 1, 1, 0], "explicit_bounds": bounds}),
            ],
        )  # fmt: skip
        cumulative = _add_metric(request, "api", name="latency.cum").histogram
        cumulative.aggregation_temporality = CUMULATIVE
        _points(
            cumulative,
            [
                (w + 30 * s, {"count": 10, "sum": 100.0, "bucket_counts": [10, 0],
                              "explicit_bounds": [5.0]}),
                (w + 90 * s, {"count": 30, "sum": 500.0, "bucket_counts": [20, 10],
                              "explicit_bounds": [5.0]}),
            ],
            start=w - 600 * s,
        )  # fmt: skip
        return request

    def query(self, name: str, aggregation: int, **fields: Any) -> query_pb2.QueryMetricsRequest:
        return query_pb2.QueryMetricsRequest(
            metric_name=name,
            start_time=ts(self.w),
            end_time=ts(self.w + 2 * MINUTE),
            step=Duration(seconds=60),
            aggregation=aggregation,  # type: ignore[arg-type]
            **fields,
        )

    def table(self, response: query_pb2.QueryMetricsResponse) -> dict[tuple[str, ...], list[Any]]:
        """{(service, "k=v", ...): [(step offset seconds, value), ...]}."""
        return {
            (
                series.service_name,
                *(f"{a.key}={a.value.string_value}" for a in series.attributes),
            ): [((p.time.ToNanoseconds() - self.w) // SECOND, p.value) for p in series.points]
            for series in response.series
        }


@pytest.fixture
async def farm(receiver, tenant) -> Farm:
    data = Farm()
    await export_metrics(receiver.port, tenant, data.request())
    return data


@pytest.mark.parametrize(
    ("aggregation", "core0", "core1"),
    [
        (Agg.AGGREGATION_AVG, [(0, 41.0), (60, 52.0)], [(0, 32.0), (60, 37.0)]),
        (Agg.AGGREGATION_MIN, [(0, 40.0), (60, 50.0)], [(0, 30.0), (60, 36.0)]),
        (Agg.AGGREGATION_MAX, [(0, 42.0), (60, 54.0)], [(0, 34.0), (60, 38.0)]),
        (Agg.AGGREGATION_SUM, [(0, 82.0), (60, 104.0)], [(0, 64.0), (60, 74.0)]),
        (Agg.AGGREGATION_COUNT, [(0, 2.0), (60, 2.0)], [(0, 2.0), (60, 2.0)]),
    ],
)
async def test_gauge_aggregations_per_step_and_series(
    farm, query, tenant, aggregation, core0, core1
) -> None:
    """A gauge gives one series per (service, attribute set), each step aggregating the
    points in [start + k*step, start + (k+1)*step)."""
    response = await query.QueryMetrics(
        farm.query("cpu.temp", aggregation), metadata=as_tenant(tenant)
    )
    assert (response.metric_type, response.unit) == ("gauge", "Cel")
    assert farm.table(response) == {
        ("node", "core=0"): core0,
        ("node", "core=1"): core1,
        ("other",): [(0, 99.0)] if aggregation != Agg.AGGREGATION_COUNT else [(0, 1.0)],
    }


async def test_filters_by_service_and_attributes(farm, query, tenant) -> None:
    """service_name and attribute equality select the series; another tenant sees none."""
    by_service = await query.QueryMetrics(
        farm.query("cpu.temp", Agg.AGGREGATION_MAX, service_name="other"),
        metadata=as_tenant(tenant),
    )
    assert list(farm.table(by_service)) == [("other",)]
    by_attribute = await query.QueryMetrics(
        farm.query("cpu.temp", Agg.AGGREGATION_MAX, attributes=[kv("core", "1")]),
        metadata=as_tenant(tenant),
    )
    assert list(farm.table(by_attribute)) == [("node", "core=1")]
    nobody = await query.QueryMetrics(
        farm.query("cpu.temp", Agg.AGGREGATION_MAX), metadata=as_tenant(f"{tenant}-b")
    )
    assert (nobody.metric_type, list(nobody.series)) == ("", [])


async def test_rate_of_cumulative_counter_handles_restarts(farm, query, tenant) -> None:
    """rate() of a cumulative monotonic sum: increases per second per step, the point
    before the window as baseline, a restart (new start time) counting from zero."""
    response = await query.QueryMetrics(
        farm.query("requests", Agg.AGGREGATION_RATE), metadata=as_tenant(tenant)
    )
    assert farm.table(response) == {("api",): [(0, 30 / 60), (60, 35 / 60)]}


async def test_rate_of_delta_counter_sums_the_deltas(farm, query, tenant) -> None:
    """rate() of a delta monotonic sum: the step's deltas per second."""
    response = await query.QueryMetrics(
        farm.query("bytes", Agg.AGGREGATION_RATE), metadata=as_tenant(tenant)
    )
    assert farm.table(response) == {("api",): [(0, 20.0)]}


@pytest.mark.parametrize(
    ("aggregation", "value"),
    [
        (Agg.AGGREGATION_COUNT, 10.0),
        (Agg.AGGREGATION_SUM, 1800.0),
        (Agg.AGGREGATION_AVG, 180.0),
        (Agg.AGGREGATION_MIN, 1.0),
        (Agg.AGGREGATION_MAX, 950.0),
        (Agg.AGGREGATION_RATE, 10 / 60),
        (Agg.AGGREGATION_P50, 10.0),  # rank 5 of 10: the end of the first bucket (0, 10]
        (Agg.AGGREGATION_P90, 550.0),  # rank 9: halfway through (100, 1000]
        (Agg.AGGREGATION_P99, 955.0),
    ],
)
async def test_histogram_aggregations_merge_buckets(
    farm, query, tenant, aggregation, value
) -> None:
    """Delta histogram points in a step are merged: counts, sums, min/max, observations
    per second, and quantiles interpolated inside the bucket holding them."""
    response = await query.QueryMetrics(
        farm.query("latency", aggregation), metadata=as_tenant(tenant)
    )
    assert response.metric_type == "histogram"
    ((_, points),) = farm.table(response).items()
    assert points == [(0, pytest.approx(value))]


async def test_cumulative_histogram_is_differenced(farm, query, tenant) -> None:
    """A cumulative histogram's quantiles and counts come from the increase between
    points: the first point (started long before) is only a baseline."""
    count = await query.QueryMetrics(
        farm.query("latency.cum", Agg.AGGREGATION_COUNT), metadata=as_tenant(tenant)
    )
    assert farm.table(count) == {("api",): [(60, 20.0)]}
    median = await query.QueryMetrics(
        farm.query("latency.cum", Agg.AGGREGATION_P50), metadata=as_tenant(tenant)
    )
    # rank 10 of the 20 new observations: the end of the first bucket, (0, 5]
    assert farm.table(median) == {("api",): [(60, pytest.approx(5.0))]}


async def test_series_are_paged(farm, query, tenant) -> None:
    """Series come in pages of page_size, sorted by service then attributes."""
    first = await query.QueryMetrics(
        farm.query("cpu.temp", Agg.AGGREGATION_AVG, page_size=2), metadata=as_tenant(tenant)
    )
    assert list(farm.table(first)) == [("node", "core=0"), ("node", "core=1")]
    rest = await query.QueryMetrics(
        farm.query("cpu.temp", Agg.AGGREGATION_AVG, page_size=2, page_token=first.next_page_token),
        metadata=as_tenant(tenant),
    )
    assert list(farm.table(rest)) == [("other",)]
    assert rest.next_page_token == ""


def _sdk_histogram(port: int | None, tenant: str) -> None:
    reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    provider = MeterProvider(
        resource=Resource.create({"service.name": "sdk-metrics"}), metric_readers=[reader]
    )
    latency = provider.get_meter("m").create_histogram("sdk.latency", unit="ms")
    for value in (3, 7, 120):
        latency.record(value, {"route": "/pay"})
    data = reader.get_metrics_data()
    exporter = OTLPMetricExporter(
        endpoint=f"127.0.0.1:{port}", insecure=True, headers={"x-scope-orgid": tenant}
    )
    try:
        exporter.export(data)
    finally:
        exporter.shutdown()
        provider.shutdown()


async def test_sdk_histogram_is_queryable(receiver, query, tenant) -> None:
    """A histogram recorded and exported by the SDK is counted and summed per step."""
    await asyncio.to_thread(_sdk_histogram, receiver.port, tenant)
    now = time.time_ns()
    request = query_pb2.QueryMetricsRequest(
        metric_name="sdk.latency",
        start_time=ts(now - MINUTE),
        end_time=ts(now + MINUTE),
        step=Duration(seconds=120),
        aggregation=Agg.AGGREGATION_SUM,
    )
    response = await query.QueryMetrics(request, metadata=as_tenant(tenant))
    ((series),) = response.series
    assert (series.service_name, [(a.key, a.value.string_value) for a in series.attributes]) == (
        "sdk-metrics",
        [("route", "/pay")],
    )
    assert [point.value for point in series.points] == [130.0]


@pytest.mark.parametrize(
    ("name", "fields", "field"),
    [
        ("cpu.temp", {"aggregation": 0}, "aggregation"),
        ("cpu.temp", {"aggregation": 42}, "aggregation"),
        ("cpu.temp", {"aggregation": Agg.AGGREGATION_P99}, "aggregation"),  # not a histogram
        ("queue.depth", {"aggregation": Agg.AGGREGATION_RATE}, "aggregation"),  # not monotonic
        ("", {}, "metric_name"),
        ("cpu.temp", {"step": Duration(nanos=500_000_000)}, "step"),
        ("cpu.temp", {"step": Duration(seconds=-60)}, "step"),
        ("cpu.temp", {"end_time": ts(1)}, "end_time"),
    ],
)
async def test_bad_metric_queries_name_the_field(farm, query, tenant, name, fields, field) -> None:
    """An unknown, missing or inapplicable aggregation, a missing name, a step under 1s
    or giving too many steps, and a bad range get INVALID_ARGUMENT naming the field."""
    request = farm.query(name, Agg.AGGREGATION_AVG)
    for key, value in fields.items():
        if key in ("step", "end_time"):
            getattr(request, key).CopyFrom(value)
        else:
            setattr(request, key, value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await query.QueryMetrics(request, metadata=as_tenant(tenant))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [name for name, _ in status_details(caught.value)] == [field]


async def test_too_many_steps_is_refused(query, tenant) -> None:
    """A step that splits the range into more than 11,000 steps is INVALID_ARGUMENT."""
    request = query_pb2.QueryMetricsRequest(
        metric_name="m",
        start_time=ts(0),
        end_time=ts(11_001 * SECOND),
        step=Duration(seconds=1),
        aggregation=Agg.AGGREGATION_AVG,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await query.QueryMetrics(request, metadata=as_tenant(tenant))
    assert [name for name, _ in status_details(caught.value)] == ["step"]
