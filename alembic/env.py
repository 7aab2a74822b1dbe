"""Alembic environment: an async engine, with the migration steps bridged through run_sync.

(An `async def` upgrade, or awaiting `context.run_migrations()`, records the revision and
creates nothing; see the troubleshooting seed. Each step runs synchronously inside
`connection.run_sync`.)
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config


def _url() -> str:
    url = config.attributes.get("sqlalchemy_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        from receiver.settings import Settings

        url = Settings.from_env().sqlalchemy_url
    return str(url)


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=_url(), literal_binds=True, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_async_migrations())
