"""The wheel carries every package and the migration scripts (a plain `pip install .` must work)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_in_pyproject() -> None:
    """A package folder missing from [tool.setuptools] packages would be left out of the wheel."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("receiver", "analyzer", "prodsentinel")
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found - listed == set()


def test_migration_scripts_are_mapped_into_the_wheel() -> None:
    """alembic/ ships as receiver.migrations_scripts, with every revision file."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"]["receiver.migrations_scripts"] == "alembic"
    assert setuptools["package-dir"]["receiver.migrations_scripts.versions"] == "alembic/versions"
    assert "*.py" in setuptools["package-data"]["receiver.migrations_scripts.versions"]
    assert list((ROOT / "alembic" / "versions").glob("0001_*.py"))
