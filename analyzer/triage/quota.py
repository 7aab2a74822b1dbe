"""Tier-2 cost control: per-tenant call and token budgets and the answer cache by fingerprint.

The policy is pure (`permits`, `cache_usable`, `bucket_keys`); the state lives in Redis
(`RedisBudget`) so that every worker process of the fleet shares one budget and one
cache: calls are counted per tenant in an hour bucket and tokens in a day bucket, each
an INCR/INCRBY with an EXPIRE, so counting is atomic without a lock. A call slot is
taken (INCR) before the call and given back (DECR) when the slot was over the limit, so
two workers racing for the last slot cannot both get it. `MemoryBudget` keeps the same
state in one process, for tools and tests that run without Redis.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson
import redis

from analyzer.lifecycle import IncidentSeverity
from analyzer.triage.llm_config import LLMConfig

HOUR = 3600
DAY = 86_400
# Buckets outlive their period a little so a clock skew between workers loses nothing.
BUCKET_GRACE_SECONDS = 300


class CostControl(Protocol):
    """What tier 2 asks before and after a model call (blocking; run it in a thread)."""

    def reserve(self, tenant: str) -> bool:
        """Take one call slot of the tenant's hourly budget; False when none is left."""
        ...

    def spend(self, tenant: str, tokens: int) -> None:
        """Add the tokens a call used to the tenant's daily budget."""
        ...

    def cached(self, tenant: str, fingerprint: str, severity: str) -> dict[str, Any] | None:
        """A fresh answer for the fingerprint, unless the severity has risen since."""
        ...

    def remember(
        self, tenant: str, fingerprint: str, severity: str, result: dict[str, Any]
    ) -> None:
        """Cache the answer for the fingerprint at this severity."""
        ...


def permits(calls_including_this_one: int, tokens_used: int, config: LLMConfig) -> bool:
    """Whether a call may go out: within the hourly call budget and the daily token budget."""
    return calls_including_this_one <= config.calls_per_hour and tokens_used < config.tokens_per_day


def cache_usable(cached_severity: str, severity: str) -> bool:
    """A cached answer serves unless the incident is now more severe than when it was made."""
    return IncidentSeverity(severity).rank <= IncidentSeverity(cached_severity).rank


def bucket_keys(namespace: str, tenant: str, now: float) -> tuple[str, str]:
    """The Redis keys of the tenant's current hour (calls) and day (tokens) buckets."""
    hour, day = int(now // HOUR), int(now // DAY)
    return (
        f"{namespace}:llm:calls:{tenant}:{hour}",
        f"{namespace}:llm:tokens:{tenant}:{day}",
    )


def cache_key(namespace: str, tenant: str, fingerprint: str) -> str:
    return f"{namespace}:llm:cache:{tenant}:{fingerprint}"


@dataclasses.dataclass
class RedisBudget:
    """The fleet-wide budget and cache, in the marks Redis under `namespace`."""

    client: redis.Redis
    config: LLMConfig
    namespace: str
    clock: Callable[[], float] = time.time

    def reserve(self, tenant: str) -> bool:
        calls_key, tokens_key = bucket_keys(self.namespace, tenant, self.clock())
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(calls_key)
        pipe.expire(calls_key, HOUR + BUCKET_GRACE_SECONDS)
        pipe.get(tokens_key)
        calls, _, tokens = pipe.execute()
        if permits(int(calls), int(tokens or 0), self.config):
            return True
        self.client.decr(calls_key)  # give the slot back: it was never used
        return False

    def spend(self, tenant: str, tokens: int) -> None:
        _, tokens_key = bucket_keys(self.namespace, tenant, self.clock())
        pipe = self.client.pipeline(transaction=True)
        pipe.incrby(tokens_key, tokens)
        pipe.expire(tokens_key, DAY + BUCKET_GRACE_SECONDS)
        pipe.execute()

    def cached(self, tenant: str, fingerprint: str, severity: str) -> dict[str, Any] | None:
        raw = self.client.get(cache_key(self.namespace, tenant, fingerprint))
        if raw is None:
            return None
        entry = orjson.loads(raw)
        if not cache_usable(entry["severity"], severity):
            return None
        result: dict[str, Any] = entry["result"]
        return result

    def remember(
        self, tenant: str, fingerprint: str, severity: str, result: dict[str, Any]
    ) -> None:
        entry = orjson.dumps({"severity": severity, "result": result})
        ttl_ms = max(int(self.config.cache_ttl_seconds * 1000), 1)
        self.client.set(cache_key(self.namespace, tenant, fingerprint), entry, px=ttl_ms)


@dataclasses.dataclass
class MemoryBudget:
    """The same budget and cache in one process's memory (tools and tests without Redis)."""

    config: LLMConfig
    clock: Callable[[], float] = time.time
    _counters: dict[str, int] = dataclasses.field(default_factory=dict)
    _cache: dict[tuple[str, str], tuple[float, str, dict[str, Any]]] = dataclasses.field(
        default_factory=dict
    )

    def reserve(self, tenant: str) -> bool:
        calls_key, tokens_key = bucket_keys("", tenant, self.clock())
        calls = self._counters.get(calls_key, 0) + 1
        if not permits(calls, self._counters.get(tokens_key, 0), self.config):
            return False
        self._counters[calls_key] = calls
        return True

    def spend(self, tenant: str, tokens: int) -> None:
        _, tokens_key = bucket_keys("", tenant, self.clock())
        self._counters[tokens_key] = self._counters.get(tokens_key, 0) + tokens

    def cached(self, tenant: str, fingerprint: str, severity: str) -> dict[str, Any] | None:
        entry = self._cache.get((tenant, fingerprint))
        if entry is None or self.clock() - entry[0] > self.config.cache_ttl_seconds:
            return None
        return entry[2] if cache_usable(entry[1], severity) else None

    def remember(
        self, tenant: str, fingerprint: str, severity: str, result: dict[str, Any]
    ) -> None:
        self._cache[(tenant, fingerprint)] = (self.clock(), severity, result)
