"""QueryMetrics arithmetic: stored metric points -> one series of step values per distinct
(service, attribute set). Pure.

A series gathers the points of every stream (resource + scope + attributes) with its
service and attributes. Per step [start + k*step, start + (k+1)*step):

- gauges and sums: avg / min / max / sum / count of the point values;
- rate (monotonic sums): the increase per second. Delta points are increases; cumulative
  points are differenced per stream, a restart (new start time, or a lower value) counting
  from zero, as Prometheus' rate() does;
- histograms (explicit and exponential) and summaries: counts, sums and buckets are
  differenced the same way for cumulative streams, then count / sum / avg (sum / count) /
  rate (observations per second), min / max (the points' own, which for cumulative
  streams cover the stream's life) and p50 / p90 / p99 estimated from the merged buckets
  by linear interpolation inside the bucket, like Prometheus' histogram_quantile().

The first point of a cumulative stream only serves as a baseline, unless the stream
started in view (its start time is within one step before the window).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from receiver.errors import InvalidRequestError
from receiver.query import Row
from receiver.query.validation import MetricQuery

CUMULATIVE = 2  # opentelemetry.proto.metrics.v1.AggregationTemporality
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
NUMBER_TYPES = frozenset({"gauge", "sum"})
ALLOWED = {
    "gauge": frozenset({"avg", "min", "max", "sum", "count"}),
    "sum": frozenset({"avg", "min", "max", "sum", "count", "rate"}),
    "histogram": frozenset({"avg", "min", "max", "sum", "count", "rate", *QUANTILES}),
    "exponential_histogram": frozenset({"avg", "min", "max", "sum", "count", "rate", *QUANTILES}),
    "summary": frozenset({"avg", "sum", "count", "rate"}),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Series:
    service_name: str
    attributes: str  # stored JSON text (jsonb's canonical form)
    points: list[tuple[int, float]]  # (step start in Unix ns, value)


@dataclasses.dataclass(slots=True)
class _Dist:
    """A distribution point, or the difference of two."""

    count: float
    sum: float | None
    min: float | None
    max: float | None
    buckets: dict[float, float]  # upper bound -> count


@dataclasses.dataclass(slots=True)
class _Step:
    count: float = 0.0
    total: float = 0.0
    has_total: bool = False
    low: float = math.inf
    high: float = -math.inf
    distributions: bool = False
    buckets: dict[float, float] = dataclasses.field(default_factory=dict)


def check_aggregation(metric_type: str, is_monotonic: bool | None, aggregation: str) -> None:
    """INVALID_ARGUMENT for an aggregation the metric's type cannot answer."""
    allowed = ALLOWED.get(metric_type, frozenset())
    if metric_type == "sum" and not is_monotonic:
        allowed = allowed - {"rate"}
    if aggregation not in allowed:
        kind = "non-monotonic sum" if metric_type == "sum" else metric_type
        raise InvalidRequestError(
            "aggregation",
            f"{aggregation} does not apply to a {kind} (use {', '.join(sorted(allowed))})",
        )


def aggregate(rows: Iterable[Row], query: MetricQuery, metric_type: str) -> list[Series]:
    """Rows (oldest first, from one step before the window) -> sorted series."""
    start, end, step = query.window.start_ns, query.window.end_ns, query.step_ns
    streams: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        key = (row["service_name"], row["attributes"], row["resource"], row["scope_name"])
        streams.setdefault(key, []).append(row)
    steps: dict[tuple[str, str], dict[int, _Step]] = {}
    for (service, attributes, _, _), points in streams.items():
        series = steps.setdefault((service, attributes), {})
        for time_ns, contribution in _contributions(points, metric_type, query, start - step):
            if start <= time_ns < end:
                _add(series.setdefault((time_ns - start) // step, _Step()), contribution)
    result = []
    for (service, attributes), series in sorted(steps.items()):
        values = [
            (start + index * step, value)
            for index, acc in sorted(series.items())
            if (value := _value(acc, query.aggregation, step)) is not None
        ]
        if values:
            result.append(Series(service, attributes, values))
    return result


def _contributions(
    points: list[Row], metric_type: str, query: MetricQuery, view_start: int
) -> Iterable[tuple[int, float | _Dist]]:
    """One stream's points as (time, value or distribution) to add to steps."""
    previous: Row | None = None
    previous_dist: _Dist | None = None
    for row in points:
        time_ns = row["time_unix_nano"]
        cumulative = row["aggregation_temporality"] == CUMULATIVE
        fresh = previous is None or row["start_time_unix_nano"] != previous["start_time_unix_nano"]
        started_in_view = (
            row["start_time_unix_nano"] > 0 and row["start_time_unix_nano"] >= view_start
        )
        if metric_type in NUMBER_TYPES:
            value = row["value"]
            if query.aggregation != "rate" or not cumulative:
                yield time_ns, value
            elif previous is not None and not fresh and value >= previous["value"]:
                yield time_ns, value - previous["value"]
            elif previous is not None or started_in_view:
                yield time_ns, value  # restarted (or started) counter: all of it is new
        else:
            dist = _dist(orjson.loads(row["distribution"]), metric_type)
            if not cumulative:
                yield time_ns, dist
            elif previous_dist is not None and not fresh and _continues(previous_dist, dist):
                yield time_ns, _minus(dist, previous_dist)
            elif previous is not None or started_in_view:
                yield time_ns, dist
            previous_dist = dist
        previous = row


def _add(acc: _Step, contribution: float | _Dist) -> None:
    if isinstance(contribution, _Dist):
        acc.distributions = True
        acc.count += contribution.count
        if contribution.sum is not None:
            acc.total += contribution.sum
            acc.has_total = True
        if contribution.min is not None:
            acc.low = min(acc.low, contribution.min)
        if contribution.max is not None:
            acc.high = max(acc.high, contribution.max)
        for bound, count in contribution.buckets.items():
            acc.buckets[bound] = acc.buckets.get(bound, 0.0) + count
        return
    acc.count += 1
    acc.total += contribution
    acc.has_total = True
    acc.low = min(acc.low, contribution)
    acc.high = max(acc.high, contribution)


def _value(acc: _Step, aggregation: str, step_ns: int) -> float | None:
    """The step's value for `aggregation`; None leaves the step out (nothing to report)."""
    if aggregation == "count":
        return acc.count
    if aggregation == "rate":
        # numbers carry increases in `total`; distributions count observations
        return (acc.count if acc.distributions else acc.total) / (step_ns / 1e9)
    if aggregation == "sum":
        return acc.total if acc.has_total else None
    if aggregation == "avg":
        return acc.total / acc.count if acc.has_total and acc.count else None
    if aggregation == "min":
        return acc.low if acc.low != math.inf else None
    if aggregation == "max":
        return acc.high if acc.high != -math.inf else None
    return quantile(QUANTILES[aggregation], acc.buckets)


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of bucketed observations (upper bound -> count), interpolating
    linearly inside the bucket holding it; the first bucket starts at 0 (or is its bound
    when that is not positive), and a quantile in the +Inf bucket is the largest finite
    bound (histogram_quantile's rules)."""
    items = sorted(buckets.items())
    total = sum(count for _, count in items)
    if total <= 0:
        return None
    rank = q * total
    cumulative = 0.0
    lower: float | None = None
    for upper, count in items:
        if count > 0 and cumulative + count >= rank:
            if math.isinf(upper):
                return lower
            if lower is None:
                if upper <= 0:
                    return upper
                lower = 0.0
            return lower + (upper - lower) * (rank - cumulative) / count
        cumulative += count
        lower = upper
    return lower


def _number(value: Any) -> float | None:
    """A stored double: plain, None, or tagged (NaN / Infinity / -Infinity)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return float(value["@double"].replace("Infinity", "inf"))
    return float(value)


def _dist(data: Mapping[str, Any], metric_type: str) -> _Dist:
    buckets: dict[float, float] = {}
    if metric_type == "histogram" and data.get("bucket_counts"):
        bounds = [_number(bound) for bound in data["explicit_bounds"]] + [math.inf]
        buckets = {
            bound: float(count)
            for bound, count in zip(bounds, data["bucket_counts"], strict=True)
            if bound is not None
        }
    elif metric_type == "exponential_histogram":
        buckets = _exponential_buckets(data)
    return _Dist(
        count=float(data["count"]),
        sum=_number(data.get("sum")),
        min=_number(data.get("min")),
        max=_number(data.get("max")),
        buckets=buckets,
    )


def _exponential_buckets(data: Mapping[str, Any]) -> dict[float, float]:
    """Exponential buckets as upper bound -> count: bucket i covers (base^i, base^(i+1)]
    with base = 2^(2^-scale), mirrored for negative values, and the zero bucket."""
    scale = data["scale"]

    def power(index: int) -> float:
        try:
            return float(2.0 ** (index / 2.0**scale))
        except OverflowError:
            return math.inf

    buckets: dict[float, float] = {}
    negative = data["negative"]
    for i, count in enumerate(negative["bucket_counts"]):
        index = negative["offset"] + i
        buckets[-power(index)] = buckets.get(-power(index), 0.0) + count
    threshold = _number(data.get("zero_threshold")) or 0.0
    buckets[threshold] = buckets.get(threshold, 0.0) + data["zero_count"]
    positive = data["positive"]
    for i, count in enumerate(positive["bucket_counts"]):
        upper = power(positive["offset"] + i + 1)
        buckets[upper] = buckets.get(upper, 0.0) + count
    return buckets


def _continues(previous: _Dist, current: _Dist) -> bool:
    """Whether `current` is `previous` plus more observations (no restart, same buckets)."""
    return current.count >= previous.count and current.buckets.keys() == previous.buckets.keys()


def _minus(current: _Dist, previous: _Dist) -> _Dist:
    total = (
        current.sum - previous.sum if current.sum is not None and previous.sum is not None else None
    )
    return _Dist(
        count=current.count - previous.count,
        sum=total,
        min=current.min,
        max=current.max,
        buckets={
            bound: count - previous.buckets[bound] for bound, count in current.buckets.items()
        },
    )
