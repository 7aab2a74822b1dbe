"""The service graph's configuration: a frozen value built once and passed down.

`GraphConfig.from_settings(settings)` takes the `graph_*` fields of
`receiver.settings.Settings` when it has them and keeps these defaults otherwise; nothing
here reads the environment. ENVIRONMENT names the variable behind each field, for the
settings module and for error messages.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from receiver.errors import SettingsError

HOUR = 3600.0
DAY = 24 * HOUR

# field -> environment variable (read by receiver.settings, never here)
ENVIRONMENT = {
    "stale_after_seconds": "PRODSENTINEL_GRAPH_STALE_AFTER_SECONDS",
    "settle_seconds": "PRODSENTINEL_GRAPH_SETTLE_SECONDS",
    "initial_lookback_seconds": "PRODSENTINEL_GRAPH_INITIAL_LOOKBACK_SECONDS",
    "max_window_seconds": "PRODSENTINEL_GRAPH_MAX_WINDOW_SECONDS",
    "pair_lookback_seconds": "PRODSENTINEL_GRAPH_PAIR_LOOKBACK_SECONDS",
    "clock_skew_seconds": "PRODSENTINEL_GRAPH_CLOCK_SKEW_SECONDS",
    "max_span_seconds": "PRODSENTINEL_GRAPH_MAX_SPAN_SECONDS",
    "stats_retention_seconds": "PRODSENTINEL_GRAPH_STATS_RETENTION_SECONDS",
    "max_cycles": "PRODSENTINEL_GRAPH_MAX_CYCLES",
    "upkeep_interval_seconds": "PRODSENTINEL_GRAPH_UPKEEP_INTERVAL_SECONDS",
    "statement_timeout_seconds": "PRODSENTINEL_GRAPH_STATEMENT_TIMEOUT_SECONDS",
}


@dataclasses.dataclass(frozen=True, slots=True)
class GraphConfig:
    """What the aggregation, staleness and cycle upkeep need to know."""

    # An edge not observed for this long is stale: kept, but left out of traversals
    # and cycle detection by default.
    stale_after_seconds: float = DAY
    # Spans that ended less than this long ago are left for the next run, so the other
    # side of a call (exported by another process, batched by a Collector) is stored first.
    settle_seconds: float = 60.0
    # How far back the very first run reads.
    initial_lookback_seconds: float = HOUR
    # The most span time one run reads; a run that is behind says so and the next continues.
    max_window_seconds: float = 15 * 60.0
    # A parent may start this long before its child (queued messages) ...
    pair_lookback_seconds: float = 6 * HOUR
    # ... or this long after it (clocks of different hosts).
    clock_skew_seconds: float = 300.0
    # Spans longer than this are not read (it bounds the partitions a run touches).
    max_span_seconds: float = DAY
    # Hourly edge stats older than this are deleted (time-range graphs reach this far).
    stats_retention_seconds: float = 7 * DAY
    # Elementary cycles raised per tenant and run at most (a dense cluster has very many).
    max_cycles: int = 100
    # How often the worker runs run_graph_upkeep; 0 disables the periodic run.
    upkeep_interval_seconds: float = 60.0
    # A run's statements may take this long (whatever the pool's own statement_timeout);
    # 0 means no limit.
    statement_timeout_seconds: float = 300.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value < 0:
                raise SettingsError(ENVIRONMENT[field.name], f"must be >= 0, got {value}")
        positive = (
            "stale_after_seconds",
            "max_window_seconds",
            "max_span_seconds",
            "stats_retention_seconds",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(ENVIRONMENT[name], "must be > 0")
        if self.max_cycles < 1:
            raise SettingsError(ENVIRONMENT["max_cycles"], "must be >= 1")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> GraphConfig:
        """From `settings.graph` (receiver.settings), else fields named `graph_<field>`."""
        built = getattr(settings, "graph", None)
        if isinstance(built, GraphConfig):
            return dataclasses.replace(built, **overrides)
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            value = getattr(settings, f"graph_{field.name}", None)
            if value is not None:
                values[field.name] = value
        values.update(overrides)
        return cls(**values)
