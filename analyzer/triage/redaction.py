"""Redaction of secrets and personal data from text before it leaves the process.

Patterns are data (name, compiled regex); `redact` replaces each match with
`[REDACTED:<name>]`. Order matters: the specific shapes (private keys, JWTs, URLs with
passwords) go before the generic ones (emails, IPs, long digit runs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

Pattern = tuple[str, re.Pattern[str]]

PATTERNS: tuple[Pattern, ...] = (
    (
        "private_key",
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
    ),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")),
    ("bearer", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")),
    ("aws_access_key", re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b")),
    (
        "aws_secret",
        re.compile(r"(?i)aws_?secret_?access_?key\W{0,3}[A-Za-z0-9/+=]{40}"),
    ),
    (
        "api_key",
        re.compile(
            r"\b(sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}"
            r"|AIza[A-Za-z0-9_-]{30,})"
        ),
    ),
    (
        "secret_assignment",
        re.compile(
            r"(?i)\b(api[_-]?key|apikey|secret|token|passwd|password|pwd)\b(\s*[=:]\s*)"
            r"[\"']?[^\s\"',;&]{4,}"
        ),
    ),
    ("url_password", re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+):[^\s@/]+@")),
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    ("ipv4", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
    ("ipv6", re.compile(r"\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b")),
    ("card_number", re.compile(r"\b(?:\d[ -]?){12,18}\d\b")),
)


def compile_extra(patterns: Iterable[str]) -> tuple[Pattern, ...]:
    """User-configured extra patterns (regex source text), named `custom_<n>`."""
    return tuple((f"custom_{n}", re.compile(source)) for n, source in enumerate(patterns))


def redact(text: str, extra: Sequence[Pattern] = ()) -> str:
    """`text` with every secret or personal datum replaced by a `[REDACTED:<kind>]` mark."""
    for name, pattern in (*PATTERNS, *extra):
        if name == "url_password":
            text = pattern.sub(r"\1:[REDACTED:url_password]@", text)
        elif name == "secret_assignment":
            text = pattern.sub(r"\1\2[REDACTED:secret_assignment]", text)
        elif name == "card_number":
            text = pattern.sub(_card, text)
        else:
            text = pattern.sub(f"[REDACTED:{name}]", text)
    return text


def _card(match: re.Match[str]) -> str:
    """Luhn-valid 13-19 digit runs only, so ordinary long numbers (ids, times) survive."""
    candidate = match.group(0)
    digits = [int(c) for c in candidate if c.isdigit()]
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return "[REDACTED:card_number]" if total % 10 == 0 else candidate
