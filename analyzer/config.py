"""The analyzer's configuration: a frozen value built once from Settings and passed down.

Until `receiver.settings.Settings` carries the incident fields, `from_settings` falls
back to these defaults for the ones it lacks; nothing here reads the environment.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from receiver.errors import SettingsError

DEFAULT_NAMESPACE = "prodsentinel"


@dataclasses.dataclass(frozen=True, slots=True)
class AnalyzerConfig:
    """Everything the trigger, the actors, the sweeper and the worker need to know."""

    # Broker (Dramatiq) and the Redis that holds the "already scheduled" marks.
    broker_url: str | None = None
    marks_redis_url: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    queue_name: str = "incidents"
    # Trigger: how long the rest of a trace may take to arrive before it is analysed,
    # and how long a trace stays marked as scheduled (late spans do not re-trigger it).
    settle_seconds: float = 10.0
    trace_mark_ttl_seconds: float = 3600.0
    redis_timeout_seconds: float = 0.5
    max_pending_marks: int = 10_000
    # Lifecycle and rules.
    auto_resolve_after_seconds: float = 86_400.0  # 0 disables auto-resolve
    rules_file: Path | None = None
    # Sweeper: finds committed error signals no incident holds (Redis was down).
    sweep_interval_seconds: float = 60.0
    sweep_min_age_seconds: float = 120.0  # leave triggered traces to their settle window
    sweep_overlap_seconds: float = 600.0  # re-scan this much behind the watermark (late data)
    sweep_first_lookback_seconds: float = 3600.0
    sweep_batch: int = 1000
    # Worker.
    worker_threads: int = 8
    database_pool_size: int = 8
    actor_time_limit_seconds: float = 60.0
    max_retries: int = 8
    min_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 60.0
    traceless_log_window_seconds: float = 3600.0
    max_trace_spans: int = 10_000

    def __post_init__(self) -> None:
        if self.settle_seconds < 0:
            raise SettingsError("PRODSENTINEL_INCIDENT_SETTLE_SECONDS", "must be >= 0")
        if self.trace_mark_ttl_seconds <= self.settle_seconds:
            raise SettingsError(
                "PRODSENTINEL_INCIDENT_TRIGGER_TTL_SECONDS",
                "must be longer than the settle window",
            )
        if self.worker_threads < 1:
            raise SettingsError("PRODSENTINEL_WORKER_THREADS", "must be >= 1")
        if self.auto_resolve_after_seconds < 0:
            raise SettingsError("PRODSENTINEL_INCIDENT_AUTO_RESOLVE_SECONDS", "must be >= 0")

    @property
    def settle_ms(self) -> int:
        return int(self.settle_seconds * 1000)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> AnalyzerConfig:
        """Build from a `receiver.settings.Settings` (fields it lacks keep their defaults)."""
        defaults = cls()
        redis_url: str | None = settings.redis_url
        marks = getattr(settings, "trigger_redis_url", None)
        if marks is None and redis_url is not None and not redis_url.startswith("amqp"):
            marks = redis_url
        fields: dict[str, Any] = {
            "broker_url": redis_url,
            "marks_redis_url": marks,
            "settle_seconds": getattr(settings, "incident_settle_seconds", defaults.settle_seconds),
            "trace_mark_ttl_seconds": getattr(
                settings, "incident_trigger_ttl_seconds", defaults.trace_mark_ttl_seconds
            ),
            "auto_resolve_after_seconds": getattr(
                settings, "incident_auto_resolve_seconds", defaults.auto_resolve_after_seconds
            ),
            "rules_file": getattr(settings, "incident_rules_file", defaults.rules_file),
            "sweep_interval_seconds": getattr(
                settings, "incident_sweep_interval_seconds", defaults.sweep_interval_seconds
            ),
            "sweep_min_age_seconds": getattr(
                settings, "incident_sweep_min_age_seconds", defaults.sweep_min_age_seconds
            ),
            "worker_threads": getattr(settings, "worker_threads", defaults.worker_threads),
        }
        fields["database_pool_size"] = fields["worker_threads"]
        fields.update(overrides)
        return cls(**fields)
