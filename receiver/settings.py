"""The one settings object: read once from the environment at start-up, then passed down."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import platformdirs

from analyzer.graph.config import ENVIRONMENT as GRAPH_ENVIRONMENT
from analyzer.graph.config import GraphConfig
from analyzer.triage.llm_config import LLMConfig
from receiver.errors import SettingsError

T = TypeVar("T")

LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR"})


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Per-item limits applied while mapping; excess is truncated and reported as a warning."""

    attribute_value_length: int = 16_384
    attribute_count: int = 128


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Validated configuration. Build it with `Settings.from_env()`; never read os.environ elsewhere."""

    database_url: str | None = None
    redis_url: str | None = None
    log_level: str = "INFO"
    grpc_address: str = "0.0.0.0:4317"
    data_dir: Path = dataclasses.field(
        default_factory=lambda: Path(platformdirs.user_data_dir("prodsentinel"))
    )
    tenant_header: str = "x-scope-orgid"
    max_receive_message_bytes: int = 4 * 1024 * 1024
    limits: Limits = dataclasses.field(default_factory=Limits)
    batch_max_rows: int = 8_192
    batch_linger_ms: float = 5.0
    writer_connections: int = 2
    max_pending_rows: int = 200_000
    partition_days_ahead: int = 3
    retry_after_seconds: float = 1.0
    health_check_interval_seconds: float = 2.0
    graph: GraphConfig = dataclasses.field(default_factory=GraphConfig)
    incident_settle_seconds: float = 10.0
    incident_trigger_ttl_seconds: float = 3600.0
    incident_auto_resolve_seconds: float = 86_400.0
    incident_rules_file: Path | None = None
    incident_sweep_interval_seconds: float = 60.0
    incident_sweep_min_age_seconds: float = 120.0
    worker_threads: int = 8
    trigger_redis_url: str | None = None
    llm: LLMConfig = dataclasses.field(default_factory=LLMConfig)

    @property
    def asyncpg_dsn(self) -> str:
        """DATABASE_URL as asyncpg wants it (plain `postgresql://`)."""
        return normalise_database_url(self._require_database_url(), driver="asyncpg")

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL as SQLAlchemy's asyncpg dialect wants it (`postgresql+asyncpg://`)."""
        return normalise_database_url(self._require_database_url(), driver="sqlalchemy")

    def _require_database_url(self) -> str:
        if self.database_url is None:
            raise SettingsError("DATABASE_URL", "is required here (or use `prodsentinel up`)")
        return self.database_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from the environment; a bad value raises SettingsError naming it."""
        env = os.environ if environ is None else environ
        defaults = cls()
        database_url = _opt(env, "DATABASE_URL")
        if database_url is not None:
            normalise_database_url(database_url, driver="asyncpg")  # validates the scheme
        redis_url = _opt(env, "REDIS_URL")
        if redis_url is not None and not redis_url.startswith(
            ("redis://", "rediss://", "unix://", "amqp://", "amqps://")
        ):
            raise SettingsError(
                "REDIS_URL", "must start with redis://, rediss://, unix://, amqp:// or amqps://"
            )
        log_level = env.get("LOG_LEVEL", defaults.log_level).upper()
        if log_level not in LOG_LEVELS:
            raise SettingsError("LOG_LEVEL", f"must be one of {', '.join(sorted(LOG_LEVELS))}")
        grpc_address = env.get("PRODSENTINEL_GRPC_ADDRESS", defaults.grpc_address)
        _check_address(grpc_address)
        tenant_header = env.get("PRODSENTINEL_TENANT_HEADER", defaults.tenant_header).lower()
        if not tenant_header or not all(c.isalnum() or c in "-_." for c in tenant_header):
            raise SettingsError(
                "PRODSENTINEL_TENANT_HEADER", "must be a gRPC metadata key ([a-z0-9-_.])"
            )
        data_dir_text = _opt(env, "PRODSENTINEL_DATA_DIR")
        data_dir = Path(data_dir_text).expanduser() if data_dir_text else defaults.data_dir
        limits = Limits(
            attribute_value_length=_num(
                env,
                "PRODSENTINEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                defaults.limits.attribute_value_length,
                int,
                minimum=1,
            ),
            attribute_count=_num(
                env,
                "PRODSENTINEL_ATTRIBUTE_COUNT_LIMIT",
                defaults.limits.attribute_count,
                int,
                minimum=1,
            ),
        )
        return cls(
            database_url=database_url,
            redis_url=redis_url,
            log_level=log_level,
            grpc_address=grpc_address,
            data_dir=data_dir,
            tenant_header=tenant_header,
            max_receive_message_bytes=_num(
                env,
                "PRODSENTINEL_MAX_RECV_MESSAGE_BYTES",
                defaults.max_receive_message_bytes,
                int,
                minimum=1024,
            ),
            limits=limits,
            batch_max_rows=_num(
                env, "PRODSENTINEL_BATCH_MAX_ROWS", defaults.batch_max_rows, int, minimum=1
            ),
            batch_linger_ms=_num(
                env, "PRODSENTINEL_BATCH_LINGER_MS", defaults.batch_linger_ms, float, minimum=0
            ),
            writer_connections=_num(
                env,
                "PRODSENTINEL_WRITER_CONNECTIONS",
                defaults.writer_connections,
                int,
                minimum=1,
            ),
            max_pending_rows=_num(
                env, "PRODSENTINEL_MAX_PENDING_ROWS", defaults.max_pending_rows, int, minimum=1
            ),
            partition_days_ahead=_num(
                env,
                "PRODSENTINEL_PARTITION_DAYS_AHEAD",
                defaults.partition_days_ahead,
                int,
                minimum=1,
            ),
            retry_after_seconds=_num(
                env,
                "PRODSENTINEL_RETRY_AFTER_SECONDS",
                defaults.retry_after_seconds,
                float,
                minimum=0,
            ),
            health_check_interval_seconds=_num(
                env,
                "PRODSENTINEL_HEALTH_CHECK_INTERVAL_SECONDS",
                defaults.health_check_interval_seconds,
                float,
                minimum=0.05,
            ),
            graph=_section(env, GraphConfig, GRAPH_ENVIRONMENT),
            **_incident_settings(env, defaults, redis_url),
            llm=LLMConfig.from_environment(env),
        )


def normalise_database_url(url: str, *, driver: str) -> str:
    """Accept `postgresql://`, `postgres://` or `postgresql+asyncpg://`; return the driver's form."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"postgresql", "postgres", "postgresql+asyncpg"}:
        raise SettingsError(
            "DATABASE_URL", "must start with postgresql://, postgres:// or postgresql+asyncpg://"
        )
    if driver == "asyncpg":
        return f"postgresql://{rest}"
    if driver == "sqlalchemy":
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unknown driver {driver!r}")


def _opt(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _num(
    env: Mapping[str, str], name: str, default: T, kind: Callable[[str], T], *, minimum: float
) -> T:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(name, f"must be a {kind.__name__}, got {text!r}") from None
    if value < minimum:  # type: ignore[operator]
        raise SettingsError(name, f"must be >= {minimum}, got {text!r}")
    return value


def _incident_settings(
    env: Mapping[str, str], defaults: Settings, redis_url: str | None
) -> dict[str, Any]:
    seconds = {
        "incident_settle_seconds": ("PRODSENTINEL_INCIDENT_SETTLE_SECONDS", 0.0),
        "incident_trigger_ttl_seconds": ("PRODSENTINEL_INCIDENT_TRIGGER_TTL_SECONDS", 1.0),
        "incident_auto_resolve_seconds": ("PRODSENTINEL_INCIDENT_AUTO_RESOLVE_SECONDS", 0.0),
        "incident_sweep_interval_seconds": ("PRODSENTINEL_INCIDENT_SWEEP_INTERVAL_SECONDS", 0.0),
        "incident_sweep_min_age_seconds": ("PRODSENTINEL_INCIDENT_SWEEP_MIN_AGE_SECONDS", 0.0),
    }
    values: dict[str, Any] = {
        field: _num(env, variable, getattr(defaults, field), float, minimum=minimum)
        for field, (variable, minimum) in seconds.items()
    }
    if values["incident_trigger_ttl_seconds"] <= values["incident_settle_seconds"]:
        raise SettingsError(
            "PRODSENTINEL_INCIDENT_TRIGGER_TTL_SECONDS", "must be longer than the settle window"
        )
    rules = _opt(env, "PRODSENTINEL_INCIDENT_RULES_FILE")
    values["incident_rules_file"] = Path(rules).expanduser() if rules else None
    values["worker_threads"] = _num(
        env, "PRODSENTINEL_WORKER_THREADS", defaults.worker_threads, int, minimum=1
    )
    marks = _opt(env, "PRODSENTINEL_TRIGGER_REDIS_URL")
    if marks is not None and not marks.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("PRODSENTINEL_TRIGGER_REDIS_URL", "must be a redis:// URL")
    if marks is None and redis_url is not None and redis_url.startswith(("amqp://", "amqps://")):
        raise SettingsError(
            "PRODSENTINEL_TRIGGER_REDIS_URL",
            "is required when REDIS_URL is amqp:// (the trigger's marks live in Redis)",
        )
    values["trigger_redis_url"] = marks
    return values


def _section(env: Mapping[str, str], kind: Callable[..., T], variables: Mapping[str, str]) -> T:
    """A nested config dataclass: each field from its variable when set, else its default.

    The dataclass validates itself and raises SettingsError naming the variable.
    """
    defaults: Any = kind()
    values: dict[str, Any] = {}
    for field, variable in variables.items():
        default = getattr(defaults, field)
        parse: Callable[[str], Any] = float if isinstance(default, float) else type(default)
        values[field] = _num(env, variable, default, parse, minimum=float("-inf"))
    return kind(**values)


def _check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError("PRODSENTINEL_GRPC_ADDRESS", f"must be host:port, got {address!r}")
