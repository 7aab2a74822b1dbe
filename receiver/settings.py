"""The one settings object: read once from the environment at start-up, then passed down."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import platformdirs

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


def _check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError("PRODSENTINEL_GRPC_ADDRESS", f"must be host:port, got {address!r}")
