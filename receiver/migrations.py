"""Schema migrations through Alembic (never `create_all`), from a checkout or an installed wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config

from receiver.errors import ProdSentinelError
from receiver.settings import normalise_database_url


def script_location() -> Path:
    """The Alembic scripts: packaged as receiver.migrations_scripts, or the checkout's alembic/."""
    spec = importlib.util.find_spec("receiver.migrations_scripts")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / "env.py").is_file():
                return Path(location)
    checkout = Path(__file__).resolve().parent.parent / "alembic"
    if (checkout / "env.py").is_file():
        return checkout
    raise ProdSentinelError("the Alembic migration scripts are missing from this installation")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.attributes["sqlalchemy_url"] = normalise_database_url(database_url, driver="sqlalchemy")
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Apply migrations up to `revision` (every branch head by default).

    Call from synchronous code: env.py runs its own event loop.
    """
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
