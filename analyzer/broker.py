"""The Dramatiq broker, built from the analyzer's configuration when a process needs it.

`redis://`, `rediss://` and `unix://` URLs give the Redis broker (the default); `amqp://`
and `amqps://` give RabbitMQ, which needs `pip install 'dramatiq[rabbitmq]'`. Nothing is
built at import time, and the broker is never a global (dramatiq.set_broker is not used):
actors are declared on the broker they are given.
"""

from __future__ import annotations

from collections.abc import Sequence

import dramatiq
import redis
from dramatiq.middleware import Middleware, default_middleware

from analyzer.config import AnalyzerConfig
from receiver.errors import SettingsError

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
AMQP_SCHEMES = ("amqp://", "amqps://")
BROKER_SOCKET_TIMEOUT_SECONDS = 5.0


def broker_kind(url: str) -> str:
    """ "redis" or "rabbitmq" for a REDIS_URL; SettingsError for anything else."""
    if url.startswith(REDIS_SCHEMES):
        return "redis"
    if url.startswith(AMQP_SCHEMES):
        return "rabbitmq"
    raise SettingsError(
        "REDIS_URL", "must start with redis://, rediss://, unix://, amqp:// or amqps://"
    )


def build_broker(
    config: AnalyzerConfig,
    *,
    socket_timeout: float = BROKER_SOCKET_TIMEOUT_SECONDS,
    heartbeat_timeout_ms: int | None = None,
    maintenance_chance: int | None = None,
    extra_middleware: Sequence[Middleware] = (),
) -> dramatiq.Broker:
    """A new broker for `config.broker_url` with Dramatiq's default middleware.

    `socket_timeout` bounds every Redis call (the trigger passes a short one so that an
    unreachable Redis costs it little). The heartbeat and maintenance knobs exist for
    tests that kill workers: a dead worker's unacked messages are requeued by the other
    workers' maintenance once its heartbeat is older than the timeout.
    """
    url = config.broker_url
    if url is None:
        raise SettingsError(
            "REDIS_URL", "is required by the analyzer (queue for incident analysis)"
        )
    middleware: list[Middleware] = [factory() for factory in default_middleware]
    middleware.extend(extra_middleware)
    if broker_kind(url) == "rabbitmq":
        try:
            from dramatiq.brokers.rabbitmq import RabbitmqBroker
        except ImportError:  # pika is an optional dependency
            raise SettingsError(
                "REDIS_URL", "is amqp://, which needs `pip install 'dramatiq[rabbitmq]'`"
            ) from None
        return RabbitmqBroker(url=url, middleware=middleware)
    from dramatiq.brokers.redis import RedisBroker

    client = redis.Redis.from_url(
        url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
    )
    options: dict[str, int] = {}
    if heartbeat_timeout_ms is not None:
        options["heartbeat_timeout"] = heartbeat_timeout_ms
    if maintenance_chance is not None:
        options["maintenance_chance"] = maintenance_chance
    return RedisBroker(  # type: ignore[no-untyped-call]
        client=client, namespace=config.namespace, middleware=middleware, **options
    )


def marks_client(config: AnalyzerConfig, timeout: float) -> redis.Redis:
    """The Redis holding the trigger's "scheduled" marks (and the scheduler's ticks)."""
    url = config.marks_redis_url
    if url is None:
        raise SettingsError(
            "PRODSENTINEL_TRIGGER_REDIS_URL", "is required when REDIS_URL is not a Redis URL"
        )
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=0
    )
