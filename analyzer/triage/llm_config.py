"""Tier-2 settings: one frozen value read from PRODSENTINEL_LLM_* once, at start-up.

Every variable is validated here, and a bad value raises `SettingsError` naming the
variable and what it accepts. No base URL or no model means tier 2 is off.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import TypeVar

from analyzer.lifecycle import IncidentSeverity
from receiver.errors import SettingsError

N = TypeVar("N", int, float)
LOCK_MARGIN_SECONDS = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class LLMConfig:
    """Tier-2 settings (PRODSENTINEL_LLM_*); no base URL or model means no tier 2."""

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    min_severity: IncidentSeverity = IncidentSeverity.HIGH
    max_evidence_chars: int = 12_000
    max_output_tokens: int = 800
    # Cost control, fleet-wide (counters and cache live in the marks Redis).
    calls_per_hour: int = 30
    tokens_per_day: int = 500_000
    cache_ttl_seconds: float = 6 * 3600.0
    # Per provider call (the HTTP request and, around it, the whole call with its retries).
    timeout_seconds: float = 30.0
    # LLM calls in flight at once in one worker process.
    max_concurrency: int = 2
    # Extra redaction regexes (source text), applied after the built-in patterns.
    redact_patterns: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.base_url and self.model)

    @property
    def lock_ttl_seconds(self) -> float:
        """How long an incident's analysis lock lives: longer than the two calls (answer and
        repair) tier 2 may make, so it only expires when its holder died."""
        return 2 * self.timeout_seconds + LOCK_MARGIN_SECONDS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> LLMConfig:
        """Read PRODSENTINEL_LLM_* (base URL, model, key, threshold, budget, timeout,
        concurrency, extra redaction patterns)."""
        raw = environ.get("PRODSENTINEL_LLM_MIN_SEVERITY", "high").strip().lower()
        try:
            severity = IncidentSeverity(raw)
        except ValueError:
            raise SettingsError(
                "PRODSENTINEL_LLM_MIN_SEVERITY", "must be low, medium, high or critical"
            ) from None
        defaults = cls()
        return cls(
            base_url=environ.get("PRODSENTINEL_LLM_BASE_URL") or None,
            model=environ.get("PRODSENTINEL_LLM_MODEL") or None,
            api_key=environ.get("PRODSENTINEL_LLM_API_KEY") or None,
            min_severity=severity,
            calls_per_hour=_number(
                environ, "PRODSENTINEL_LLM_CALLS_PER_HOUR", int, defaults.calls_per_hour, 0
            ),
            tokens_per_day=_number(
                environ, "PRODSENTINEL_LLM_TOKENS_PER_DAY", int, defaults.tokens_per_day, 0
            ),
            timeout_seconds=_number(
                environ, "PRODSENTINEL_LLM_TIMEOUT_SECONDS", float, defaults.timeout_seconds, 0.1
            ),
            max_concurrency=_number(
                environ, "PRODSENTINEL_LLM_MAX_CONCURRENCY", int, defaults.max_concurrency, 1
            ),
            redact_patterns=parse_patterns(environ.get("PRODSENTINEL_LLM_REDACT_PATTERNS", "")),
        )


def _number(
    environ: Mapping[str, str], name: str, kind: Callable[[str], N], default: N, minimum: N
) -> N:
    """`environ[name]` as a number >= minimum, or the default when unset or empty."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    what = "an integer" if kind is int else "a number"
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(name, f"must be {what} >= {minimum}, got {raw!r}") from None
    if value < minimum or value != value:  # NaN fails the second test
        raise SettingsError(name, f"must be {what} >= {minimum}, got {raw!r}")
    return value


def parse_patterns(raw: str) -> tuple[str, ...]:
    """PRODSENTINEL_LLM_REDACT_PATTERNS: comma-separated regexes, each checked to compile."""
    patterns = tuple(part.strip() for part in raw.split(",") if part.strip())
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise SettingsError(
                "PRODSENTINEL_LLM_REDACT_PATTERNS",
                f"must be comma-separated regular expressions; {pattern!r}: {error}",
            ) from None
    return patterns
