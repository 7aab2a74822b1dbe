"""Metrics: ExportMetricsServiceRequest -> one MetricPointRow per data point.

Gauge and sum points carry their number in `value` (and `value_int` when it was an
integer); histogram, exponential-histogram and summary points keep the distribution
as structured JSON in `distribution`, with `value` left NULL. Exemplars are kept.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Exemplar,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    SummaryDataPoint,
)

from receiver.mapping.common import (
    MAX_UNIX_NANO,
    SPAN_ID_BYTES,
    TRACE_ID_BYTES,
    Mapped,
    ResourceContext,
    ScopeContext,
    content_hasher,
    dumps,
    resource_context,
    scope_context,
    text,
)
from receiver.mapping.rows import PG_EPOCH_OFFSET_US, MetricPointRow
from receiver.mapping.values import Truncations, attributes_to_json, double_to_json
from receiver.settings import Limits

Point = NumberDataPoint | HistogramDataPoint | ExponentialHistogramDataPoint | SummaryDataPoint


def metrics_to_rows(
    request: ExportMetricsServiceRequest, tenant_id: str, limits: Limits
) -> Mapped[MetricPointRow]:
    """Map every data point; invalid points are counted in `rejected`."""
    out: Mapped[MetricPointRow] = Mapped()
    for resource_metrics in request.resource_metrics:
        resource = resource_context(
            resource_metrics.resource, resource_metrics.schema_url, limits, out.cuts
        )
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_context(scope_metrics.scope, scope_metrics.schema_url, limits, out.cuts)
            for metric in scope_metrics.metrics:
                _map_metric(metric, tenant_id, resource, scope, limits, out)
    return out


def _map_metric(
    metric: Metric,
    tenant_id: str,
    resource: ResourceContext,
    scope: ScopeContext,
    limits: Limits,
    out: Mapped[MetricPointRow],
) -> None:
    kind = metric.WhichOneof("data")
    if kind is None:
        return  # a metric with no data has no points to store
    data = getattr(metric, kind)
    temporality = getattr(data, "aggregation_temporality", 0)
    monotonic: bool | None = data.is_monotonic if kind == "sum" else None
    hasher = content_hasher(resource.identity, scope.identity, metric.name.encode(), kind.encode())
    for point in data.data_points:
        problem = _problem(metric.name, kind, point)
        if problem is not None:
            out.reject(problem)
            continue
        value: float | None = None
        value_int: int | None = None
        distribution: bytes | None = None
        if isinstance(point, NumberDataPoint):
            if point.WhichOneof("value") == "as_int":
                value_int = point.as_int
                value = float(value_int)
            else:
                value = point.as_double
        else:
            distribution = dumps(_distribution(point))
        attributes, _ = attributes_to_json(
            point.attributes, limits.attribute_value_length, limits.attribute_count, out.cuts
        )
        signal = hasher.copy()
        signal.update(point.SerializeToString(deterministic=True))
        exemplars = getattr(point, "exemplars", ())
        out.rows.append(
            MetricPointRow(
                tenant_id,
                signal.digest(),
                _exemplar_trace_id(exemplars),
                resource.service_name,
                point.time_unix_nano // 1000 - PG_EPOCH_OFFSET_US,
                point.time_unix_nano,
                point.start_time_unix_nano,
                text(metric.name),
                text(metric.description),
                text(metric.unit),
                kind,
                temporality,
                monotonic,
                value,
                value_int,
                distribution,
                dumps([_exemplar(e, limits, out.cuts) for e in exemplars]) if exemplars else b"[]",
                dumps(attributes),
                point.flags,
                resource.resource_json,
                resource.dropped_attributes_count,
                resource.schema_url,
                scope.name,
                scope.version,
                scope.attributes_json,
                scope.dropped_attributes_count,
                scope.schema_url,
            )
        )


def _problem(name: str, kind: str, point: Point) -> str | None:
    if not name:
        return "metric: name is empty"
    if max(point.time_unix_nano, point.start_time_unix_nano) > MAX_UNIX_NANO:
        return f"metric {name}: time_unix_nano is beyond year 2262"
    if (
        isinstance(point, HistogramDataPoint)
        and point.bucket_counts
        and (len(point.bucket_counts) != len(point.explicit_bounds) + 1)
    ):
        return (
            f"metric {name}: histogram has {len(point.bucket_counts)} bucket counts for "
            f"{len(point.explicit_bounds)} bounds (needs bounds + 1)"
        )
    for exemplar in getattr(point, "exemplars", ()):
        if len(exemplar.trace_id) not in (0, TRACE_ID_BYTES) or len(exemplar.span_id) not in (
            0,
            SPAN_ID_BYTES,
        ):
            return f"metric {name}: exemplar trace_id/span_id has the wrong length"
    del kind
    return None


def _exemplar_trace_id(exemplars: Any) -> bytes | None:
    """A point's trace is that of its first exemplar that has one: it links metrics to traces."""
    for exemplar in exemplars:
        if any(exemplar.trace_id):  # an all-zero id means no trace
            return bytes(exemplar.trace_id)
    return None


def _distribution(point: Point) -> dict[str, Any]:
    if isinstance(point, HistogramDataPoint):
        return {
            "count": point.count,
            "sum": double_to_json(point.sum) if point.HasField("sum") else None,
            "min": double_to_json(point.min) if point.HasField("min") else None,
            "max": double_to_json(point.max) if point.HasField("max") else None,
            "explicit_bounds": [double_to_json(bound) for bound in point.explicit_bounds],
            "bucket_counts": list(point.bucket_counts),
        }
    if isinstance(point, ExponentialHistogramDataPoint):
        return {
            "count": point.count,
            "sum": double_to_json(point.sum) if point.HasField("sum") else None,
            "min": double_to_json(point.min) if point.HasField("min") else None,
            "max": double_to_json(point.max) if point.HasField("max") else None,
            "scale": point.scale,
            "zero_count": point.zero_count,
            "zero_threshold": double_to_json(point.zero_threshold),
            "positive": {
                "offset": point.positive.offset,
                "bucket_counts": list(point.positive.bucket_counts),
            },
            "negative": {
                "offset": point.negative.offset,
                "bucket_counts": list(point.negative.bucket_counts),
            },
        }
    assert isinstance(point, SummaryDataPoint)
    return {
        "count": point.count,
        "sum": double_to_json(point.sum),
        "quantile_values": [
            {"quantile": q.quantile, "value": double_to_json(q.value)}
            for q in point.quantile_values
        ],
    }


def _exemplar(exemplar: Exemplar, limits: Limits, cuts: Truncations) -> dict[str, Any]:
    attributes, _ = attributes_to_json(
        exemplar.filtered_attributes, limits.attribute_value_length, limits.attribute_count, cuts
    )
    value = (
        exemplar.as_int
        if exemplar.WhichOneof("value") == "as_int"
        else double_to_json(exemplar.as_double)
    )
    return {
        "time_unix_nano": exemplar.time_unix_nano,
        "value": value,
        "trace_id": exemplar.trace_id.hex(),
        "span_id": exemplar.span_id.hex(),
        "filtered_attributes": attributes,
    }
