"""An OpenAI-compatible Chat Completions provider (OpenAI, vLLM, Ollama, llama.cpp's server).

Plain HTTP with the standard library, run in a thread so the event loop is not blocked.
429 and 5xx answers are retried with exponential backoff, honouring a Retry-After header
(seconds) up to a cap; anything else fails at once with a `ProviderError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from analyzer.triage.providers import Completion, Message, ProviderError

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 30.0


def compute_backoff(attempt: int, retry_after: str | None, base: float = 0.5) -> float:
    """Seconds to wait before retry `attempt` (1-based): Retry-After when given, else 2^n."""
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), MAX_RETRY_AFTER_SECONDS)
        except ValueError:
            pass  # an HTTP date: fall back to our own backoff
    return float(min(base * 2 ** (attempt - 1), MAX_RETRY_AFTER_SECONDS))


@dataclasses.dataclass
class OpenAICompatibleProvider:
    """Chat Completions at `{base_url}/chat/completions`, asking for a JSON object."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout_seconds: float = 30.0
    max_retries: int = 3
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    name: str = "openai_compatible"

    async def complete(self, messages: Sequence[Message], max_tokens: int) -> Completion:
        body = orjson.dumps(
            {
                "model": self.model,
                "messages": [{"role": m.role, "content": m.content} for m in messages],
                "max_tokens": max_tokens,
                "temperature": 0,
                "response_format": {"type": "json_object"},
            }
        )
        attempt = 0
        while True:
            attempt += 1
            status, headers, payload = await asyncio.to_thread(self._post, body)
            if status == 200:
                return _completion(payload)
            if status not in RETRYABLE_STATUSES or attempt > self.max_retries:
                raise ProviderError(f"HTTP {status} from {self.base_url}: {payload[:200]!r}")
            await self.sleep(compute_backoff(attempt, headers.get("retry-after")))

    def _post(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            f"{self.base_url.rstrip('/')}/chat/completions", body, headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return response.status, _lower(response.headers.items()), response.read()
        except urllib.error.HTTPError as error:
            return error.code, _lower(error.headers.items()), error.read()
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise ProviderError(f"cannot reach {self.base_url}: {error}") from error


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}


def _completion(payload: bytes) -> Completion:
    try:
        data = orjson.loads(payload)
        text = data["choices"][0]["message"]["content"]
        usage = data.get("usage") or {}
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as error:
        raise ProviderError(f"not a Chat Completions answer: {error}") from error
    if not isinstance(text, str):
        raise ProviderError("the answer has no text content")
    return Completion(
        text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    )
