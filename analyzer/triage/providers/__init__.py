"""Language-model providers for tier-2 triage: one interface, one module per API."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclasses.dataclass(frozen=True, slots=True)
class Completion:
    """A provider's answer and what it cost."""

    text: str
    input_tokens: int
    output_tokens: int


class ProviderError(Exception):
    """The provider could not answer (after its retries); the incident keeps tier 1."""


class Provider(Protocol):
    """Something that turns chat messages into a completion."""

    name: str
    model: str

    async def complete(self, messages: Sequence[Message], max_tokens: int) -> Completion: ...
