"""Signal tables: spans, logs and metric_points, partitioned by day on their time column.

Revision ID: 0001_signal_tables
Revises:
Create Date: 2026-11-22

Each table is RANGE-partitioned on its timestamptz column; daily partitions are created
ahead of time by the receiver (receiver/partitions.py), and a DEFAULT partition catches
anything outside them (clock skew, zero timestamps, replayed history) so no row ever
fails a batch. Unique keys include the partition column, as PostgreSQL requires.
Rows are append-only: UPDATE and DELETE raise, except inside partition maintenance.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001_signal_tables"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMON_TAIL = """
    resource jsonb NOT NULL,
    resource_dropped_attributes_count bigint NOT NULL DEFAULT 0,
    resource_schema_url text NOT NULL DEFAULT '',
    scope_name text NOT NULL DEFAULT '',
    scope_version text NOT NULL DEFAULT '',
    scope_attributes jsonb NOT NULL DEFAULT '{}',
    scope_dropped_attributes_count bigint NOT NULL DEFAULT 0,
    scope_schema_url text NOT NULL DEFAULT ''
"""

SPANS = f"""
CREATE TABLE spans (
    tenant_id text NOT NULL,
    signal_id uuid NOT NULL,
    trace_id bytea NOT NULL,
    span_id bytea NOT NULL,
    parent_span_id bytea,
    service_name text NOT NULL,
    name text NOT NULL,
    kind integer NOT NULL,
    start_time timestamptz NOT NULL,
    end_time timestamptz NOT NULL,
    start_time_unix_nano bigint NOT NULL,
    end_time_unix_nano bigint NOT NULL,
    status_code integer NOT NULL,
    status_message text NOT NULL,
    trace_state text NOT NULL,
    flags bigint NOT NULL,
    attributes jsonb NOT NULL,
    dropped_attributes_count bigint NOT NULL,
    events jsonb NOT NULL,
    dropped_events_count bigint NOT NULL,
    links jsonb NOT NULL,
    dropped_links_count bigint NOT NULL,
    {COMMON_TAIL},
    -- One index serves both trace lookups (tenant_id, trace_id) and retry deduplication.
    CONSTRAINT spans_identity UNIQUE (tenant_id, trace_id, signal_id, start_time)
) PARTITION BY RANGE (start_time)
"""

LOGS = f"""
CREATE TABLE logs (
    tenant_id text NOT NULL,
    signal_id uuid NOT NULL,
    trace_id bytea,
    span_id bytea,
    service_name text NOT NULL,
    time timestamptz NOT NULL,
    time_unix_nano bigint NOT NULL,
    observed_time_unix_nano bigint NOT NULL,
    severity_number integer NOT NULL,
    severity_text text NOT NULL,
    body jsonb NOT NULL,
    attributes jsonb NOT NULL,
    dropped_attributes_count bigint NOT NULL,
    flags bigint NOT NULL,
    event_name text NOT NULL,
    {COMMON_TAIL},
    CONSTRAINT logs_identity UNIQUE (tenant_id, signal_id, time)
) PARTITION BY RANGE (time)
"""

METRIC_POINTS = f"""
CREATE TABLE metric_points (
    tenant_id text NOT NULL,
    signal_id uuid NOT NULL,
    trace_id bytea,
    service_name text NOT NULL,
    time timestamptz NOT NULL,
    time_unix_nano bigint NOT NULL,
    start_time_unix_nano bigint NOT NULL,
    metric_name text NOT NULL,
    metric_description text NOT NULL,
    metric_unit text NOT NULL,
    metric_type text NOT NULL CHECK (metric_type IN
        ('gauge', 'sum', 'histogram', 'exponential_histogram', 'summary')),
    aggregation_temporality integer NOT NULL,
    is_monotonic boolean,
    value double precision,
    value_int bigint,
    distribution jsonb,
    exemplars jsonb NOT NULL,
    attributes jsonb NOT NULL,
    flags bigint NOT NULL,
    {COMMON_TAIL},
    CONSTRAINT metric_points_identity UNIQUE (tenant_id, signal_id, time)
) PARTITION BY RANGE (time)
"""

APPEND_ONLY = """
CREATE FUNCTION prodsentinel_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('prodsentinel.maintenance', true), '') = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'signal table % is append-only', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$
"""

TABLES = ("spans", "logs", "metric_points")


def upgrade() -> None:
    op.execute(SPANS)
    op.execute(LOGS)
    op.execute(METRIC_POINTS)
    op.execute("CREATE INDEX spans_service_time ON spans (tenant_id, service_name, start_time)")
    op.execute("CREATE INDEX logs_trace ON logs (tenant_id, trace_id) WHERE trace_id IS NOT NULL")
    op.execute("CREATE INDEX logs_service_time ON logs (tenant_id, service_name, time)")
    op.execute(
        "CREATE INDEX metric_points_name_time ON metric_points (tenant_id, metric_name, time)"
    )
    op.execute(
        "CREATE INDEX metric_points_service_time ON metric_points (tenant_id, service_name, time)"
    )
    op.execute(APPEND_ONLY)
    for table in TABLES:
        op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION prodsentinel_append_only()"
        )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}")
    op.execute("DROP FUNCTION prodsentinel_append_only()")
