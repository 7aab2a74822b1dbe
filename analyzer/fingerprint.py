"""Grouping keys: exception type normalisation, message parameterisation, the fingerprint.

Parameterisation follows Sentry's: the variable parts of a message (numbers, UUIDs, hex
ids, IPs, emails, URLs, timestamps) are replaced by placeholders, so "user 42 not found"
and "user 7 not found" group together. Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import re

MAX_MESSAGE_CHARS = 1000
GENERIC_TYPE = "Error"

# Order matters: the wider shapes first, so a URL's digits are not turned into <int>s.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"<>]+"), "<url>"),
    (re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+"), "<email>"),
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?"
            r"(?:Z|[+-]\d{2}:?\d{2}\b)?|\b\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\b"
        ),
        "<timestamp>",
    ),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b(?::\d+)?"), "<ip>"),
    (
        re.compile(
            r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}(?![\w:])"
            r"|(?<![\w:])(?:[0-9a-fA-F]{1,4}:){1,6}:(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?(?![\w:])"
        ),
        "<ip>",
    ),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    (
        re.compile(
            r"(?<![A-Za-z0-9.<])-?\d+\.\d+(?=(?:ms|us|ns|s|m|h|b|kb|mb|gb|%)?(?![A-Za-z0-9.]))"
        ),
        "<float>",
    ),
    (
        re.compile(r"(?<![A-Za-z0-9.<])-?\d+(?=(?:ms|us|ns|s|m|h|b|kb|mb|gb|%)?(?![A-Za-z0-9.]))"),
        "<int>",
    ),
)
_WHITESPACE = re.compile(r"\s+")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_GENERIC_ARGS = re.compile(r"<[^<>]*>")


def parameterise(message: str) -> str:
    """The message's template: first line, variable parts replaced by placeholders."""
    first_line = message.strip().split("\n", 1)[0][:MAX_MESSAGE_CHARS]
    template = _WHITESPACE.sub(" ", first_line).strip()
    for pattern, placeholder in _PATTERNS:
        template = pattern.sub(placeholder, template)
    return template


def normalise_exception_type(exception_type: str) -> str:
    """`builtins.ValueError` -> `ValueError`; generic arguments and addresses dropped."""
    name = _ADDRESS.sub("", exception_type.strip())
    while _GENERIC_ARGS.search(name):
        name = _GENERIC_ARGS.sub("", name)
    name = _WHITESPACE.sub("", name).rstrip(":")
    name = name.removeprefix("builtins.").removeprefix("exceptions.")
    return name or GENERIC_TYPE


def compute_fingerprint(
    exception_type: str, message_template: str, service: str, operation: str
) -> str:
    """A stable 32-hex-digit key for "the same error in the same place"."""
    hasher = hashlib.blake2b(digest_size=16)
    for part in (exception_type, message_template, service, operation):
        data = part.encode("utf-8", "surrogatepass")
        hasher.update(len(data).to_bytes(4, "little"))
        hasher.update(data)
    return hasher.hexdigest()


def title_of(exception_type: str, message_template: str) -> str:
    """A one-line title: `Type: template`, shortened to fit a list view."""
    title = f"{exception_type}: {message_template}" if message_template else exception_type
    return title if len(title) <= 200 else title[:199] + "…"
