"""Settings: one validated object from the environment; a bad value names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.errors import SettingsError
from receiver.settings import Settings, normalise_database_url


def test_defaults_without_environment() -> None:
    """With nothing set, the documented defaults apply."""
    settings = Settings.from_env({})
    assert settings.grpc_address == "0.0.0.0:4317"
    assert settings.tenant_header == "x-scope-orgid"
    assert settings.max_receive_message_bytes == 4 * 1024 * 1024
    assert settings.database_url is None


@pytest.mark.parametrize(
    ("url", "asyncpg_form", "sqlalchemy_form"),
    [
        ("postgresql://u@h/db", "postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        (
            "postgres://u@h:5/db?x=1",
            "postgresql://u@h:5/db?x=1",
            "postgresql+asyncpg://u@h:5/db?x=1",
        ),
    ],
)
def test_database_url_is_normalised_per_driver(
    url: str, asyncpg_form: str, sqlalchemy_form: str
) -> None:
    """Both URL spellings are accepted; asyncpg and SQLAlchemy each get the form they need."""
    settings = Settings.from_env({"DATABASE_URL": url})
    assert settings.asyncpg_dsn == asyncpg_form
    assert settings.sqlalchemy_url == sqlalchemy_form


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://x/y"),
        ("REDIS_URL", "http://localhost"),
        ("LOG_LEVEL", "chatty"),
        ("PRODSENTINEL_GRPC_ADDRESS", "4317"),
        ("PRODSENTINEL_GRPC_ADDRESS", "host:99999"),
        ("PRODSENTINEL_TENANT_HEADER", "x tenant"),
        ("PRODSENTINEL_MAX_RECV_MESSAGE_BYTES", "lots"),
        ("PRODSENTINEL_MAX_RECV_MESSAGE_BYTES", "10"),
        ("PRODSENTINEL_BATCH_MAX_ROWS", "0"),
        ("PRODSENTINEL_BATCH_LINGER_MS", "-1"),
        ("PRODSENTINEL_ATTRIBUTE_COUNT_LIMIT", "1.5"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str) -> None:
    """A bad value stops start-up with an error that names the variable."""
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert raised.value.variable == variable
    assert variable in str(raised.value)


def test_values_are_read() -> None:
    """Every knob given in the environment ends up in the settings."""
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://r:6379/1",
            "LOG_LEVEL": "debug",
            "PRODSENTINEL_DATA_DIR": "/tmp/ps",
            "PRODSENTINEL_TENANT_HEADER": "X-Tenant",
            "PRODSENTINEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "100",
            "PRODSENTINEL_BATCH_LINGER_MS": "0",
            "PRODSENTINEL_WRITER_CONNECTIONS": "4",
        }
    )
    assert settings.redis_url == "redis://r:6379/1"
    assert settings.log_level == "DEBUG"
    assert settings.data_dir == Path("/tmp/ps")
    assert settings.tenant_header == "x-tenant"
    assert settings.limits.attribute_value_length == 100
    assert settings.batch_linger_ms == 0
    assert settings.writer_connections == 4


def test_database_url_required_where_used() -> None:
    """Asking for the DSN without DATABASE_URL names the variable."""
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        _ = Settings.from_env({}).asyncpg_dsn


def test_unknown_driver_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="driver"):
        normalise_database_url("postgresql://x/y", driver="psycopg")


def test_nested_sections_come_from_the_same_environment() -> None:
    """The graph and LLM sections are read by Settings.from_env, and their bad values name
    their variables too."""
    settings = Settings.from_env(
        {
            "PRODSENTINEL_GRAPH_STALE_AFTER_SECONDS": "120",
            "PRODSENTINEL_LLM_BASE_URL": "http://127.0.0.1:11434/v1",
            "PRODSENTINEL_LLM_MODEL": "llama3",
            "PRODSENTINEL_INCIDENT_SETTLE_SECONDS": "2",
        }
    )
    assert settings.graph.stale_after_seconds == 120
    assert settings.llm.enabled
    assert settings.incident_settle_seconds == 2
    for variable, value in (
        ("PRODSENTINEL_LLM_MIN_SEVERITY", "urgent"),
        ("PRODSENTINEL_GRAPH_MAX_CYCLES", "0"),
        ("PRODSENTINEL_WORKER_THREADS", "0"),
    ):
        with pytest.raises(SettingsError) as raised:
            Settings.from_env({variable: value})
        assert raised.value.variable == variable
