"""The graph's values: enums shared by the SQL, the API and the terminal, records, latency.

Everything the store returns is codec-independent (times as microseconds since the Unix
epoch, no jsonb), so it runs the same on a plain asyncpg pool and on the receiver's writer
pool, whose codecs differ.
"""

from __future__ import annotations

import dataclasses
import enum

import asyncpg

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

MAX_DEPTH = 10

# Upper bounds (exclusive) of the latency histogram's buckets, in milliseconds; one more
# bucket holds everything above the last. Changing them needs a migration of the stored
# arrays, so they are constants, not configuration.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    1.0,
    2.0,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    30000.0,
    60000.0,
)
LATENCY_BUCKETS = len(LATENCY_BOUNDS_MS) + 1


class Criticality(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Direction(enum.StrEnum):
    DOWNSTREAM = "downstream"  # what the service calls
    UPSTREAM = "upstream"  # what calls the service


class DiscoverySource(enum.StrEnum):
    TRACE = "trace"  # a span whose parent is in another service
    PEER_SERVICE = "peer_service"
    DB_SYSTEM = "db_system"
    MESSAGING_SYSTEM = "messaging_system"
    SERVER_ADDRESS = "server_address"


# How sure each source is that the edge is a real service-to-service call.
CONFIDENCE: dict[DiscoverySource, float] = {
    DiscoverySource.TRACE: 1.0,
    DiscoverySource.PEER_SERVICE: 0.9,
    DiscoverySource.DB_SYSTEM: 0.8,
    DiscoverySource.MESSAGING_SYSTEM: 0.8,
    DiscoverySource.SERVER_ADDRESS: 0.6,
}


def us(column: str) -> str:
    """SQL: a timestamptz expression as bigint microseconds since the Unix epoch."""
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


def ts(param: str) -> str:
    """SQL: a bigint-microseconds parameter (e.g. `$2`) as a timestamptz."""
    return f"(timestamptz 'epoch' + {param}::bigint * interval '1 microsecond')"


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceRecord:
    name: str
    kind: str
    instrumented: bool
    namespace: str
    environment: str
    team: str | None
    criticality: Criticality | None
    description: str | None
    first_seen_us: int
    last_seen_us: int
    updated_at_us: int


@dataclasses.dataclass(frozen=True, slots=True)
class Latency:
    """A mergeable latency summary: count, sum, min, max and a fixed-bucket histogram."""

    count: int
    sum_ms: float
    min_ms: float | None
    max_ms: float | None
    buckets: tuple[int, ...]

    @property
    def mean_ms(self) -> float:
        return self.sum_ms / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """Estimate the q-quantile: linear within its bucket, clamped to the seen min/max."""
        total = sum(self.buckets)
        if total == 0 or self.min_ms is None or self.max_ms is None:
            return 0.0
        rank = q * total
        seen = 0
        for index, count in enumerate(self.buckets):
            if count and seen + count >= rank:
                low = LATENCY_BOUNDS_MS[index - 1] if index > 0 else 0.0
                high = LATENCY_BOUNDS_MS[index] if index < len(LATENCY_BOUNDS_MS) else self.max_ms
                low, high = max(low, self.min_ms), min(high, self.max_ms)
                estimate = low + (high - low) * (rank - seen) / count
                return min(max(estimate, self.min_ms), self.max_ms)
            seen += count
        return self.max_ms


@dataclasses.dataclass(frozen=True, slots=True)
class EdgeRecord:
    source: str
    target: str
    discovery_source: DiscoverySource
    communication_mode: str
    protocol: str
    confidence: float
    call_count: int
    error_count: int
    latency: Latency
    first_observed_us: int
    last_observed_us: int
    stale: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Reached:
    """A service a traversal reached: how far, by which shortest path, in which direction."""

    name: str
    depth: int
    path: tuple[str, ...]  # from the start service to this one, both included
    direction: Direction


@dataclasses.dataclass(frozen=True, slots=True)
class CycleAlert:
    id: int
    path: tuple[str, ...]
    status: str
    first_detected_us: int
    detected_us: int
    last_seen_us: int
    resolved_us: int | None
