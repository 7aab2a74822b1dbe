"""Parameterisation, exception type normalisation and fingerprints (pure)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.fingerprint import (
    compute_fingerprint,
    normalise_exception_type,
    parameterise,
    title_of,
)


@pytest.mark.parametrize(
    ("message", "template"),
    [
        ("user 42 not found", "user <int> not found"),
        ("took 42ms, retrying in 1.5s", "took <int>ms, retrying in <float>s"),
        ("id 550e8400-e29b-41d4-a716-446655440000 gone", "id <uuid> gone"),
        ("mail to bob@example.com bounced", "mail to <email> bounced"),
        ("GET https://api.example.com/v1/users/7?x=1 failed", "GET <url> failed"),
        ("connect 10.0.0.12:5432 refused", "connect <ip> refused"),
        ("bind fe80::1 failed", "bind <ip> failed"),
        ("object at 0x7f3a2b1c freed", "object at <hex> freed"),
        ("commit 3f2a9c1d8e7b not found", "commit <hex> not found"),
        ("at 2026-11-22T03:04:05.123Z expired", "at <timestamp> expired"),
        ("deadline 12:30:45 passed", "deadline <timestamp> passed"),
        ("order_123 failed", "order_<int> failed"),
        ("utf8 and http2 stay", "utf8 and http2 stay"),
        ("  first line  \n  Traceback (most recent call last): 1 2 3", "first line"),
    ],
)
def test_parameterise_examples(message: str, template: str) -> None:
    """Variable parts are replaced by placeholders as Sentry does; names with digits stay."""
    assert parameterise(message) == template


@given(st.text(max_size=300))
def test_parameterise_is_idempotent(message: str) -> None:
    """A template is its own template: placeholders are never parameterised again."""
    template = parameterise(message)
    assert parameterise(template) == template
    assert "\n" not in template


ids = st.one_of(
    st.integers(0, 10**12).map(lambda n: (str(n), "<int>")),
    st.uuids().map(lambda u: (str(u), "<uuid>")),
    st.ip_addresses(v=4).map(lambda ip: (str(ip), "<ip>")),
    st.from_regex(r"[a-z][a-z0-9.]{0,10}@[a-z]{1,10}\.(com|io|org)", fullmatch=True).map(
        lambda e: (e, "<email>")
    ),
    st.integers(0, 2**64).map(lambda n: (f"0x{n:x}", "<hex>")),
    st.datetimes().map(lambda d: (d.isoformat(), "<timestamp>")),
)


@given(value=ids, number=st.integers(-(10**9), 10**9))
def test_messages_differing_only_in_variable_parts_share_a_template(
    value: tuple[str, str], number: int
) -> None:
    """Ids, numbers, addresses, emails and timestamps become their placeholder, so the same
    message shape with other values gives the same template."""
    text, placeholder = value
    assert parameterise(f"lookup of {text} failed") == f"lookup of {placeholder} failed"
    one = parameterise(f"payment {number} for {uuid.UUID(int=abs(number))} failed")
    two = parameterise(f"payment {number + 1} for {uuid.uuid4()} failed")
    assert one == two == "payment <int> for <uuid> failed"


@given(value=st.integers(0, 10**15), other=st.integers(0, 10**15))
def test_templates_hide_numbers_in_context(value: int, other: int) -> None:
    """Any two integers in the same place of a sentence give one template."""
    assert parameterise(f"queue {value} has {other} items") == parameterise("queue 1 has 2 items")


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("builtins.ValueError", "ValueError"),
        (" java.lang.NullPointerException ", "java.lang.NullPointerException"),
        ("List<String>Error", "ListError"),
        ("<Foo at 0xdeadbeef>", "Error"),
        ("", "Error"),
        ("KeyError:", "KeyError"),
    ],
)
def test_normalise_exception_type(raw: str, normalised: str) -> None:
    """Builtin prefixes, generic arguments, addresses and trailing colons are dropped."""
    assert normalise_exception_type(raw) == normalised


def test_fingerprint_depends_on_every_part_and_is_unambiguous() -> None:
    """Each of type, template, service and operation changes the fingerprint; parts cannot
    bleed into each other ("ab"+"c" differs from "a"+"bc")."""
    base = compute_fingerprint("E", "msg", "svc", "op")
    assert base == compute_fingerprint("E", "msg", "svc", "op")
    assert len(base) == 32
    variants = [
        compute_fingerprint("F", "msg", "svc", "op"),
        compute_fingerprint("E", "msh", "svc", "op"),
        compute_fingerprint("E", "msg", "svd", "op"),
        compute_fingerprint("E", "msg", "svc", "oq"),
        compute_fingerprint("Em", "sg", "svc", "op"),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_title_is_short() -> None:
    """Titles are `Type: template`, cut to 200 characters."""
    assert title_of("E", "m") == "E: m"
    assert title_of("E", "") == "E"
    assert len(title_of("E", "x" * 500)) == 200
