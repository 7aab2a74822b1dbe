"""Incidents: incidents, their occurrences and their history; error indexes for the sweeper.

Revision ID: 0003_incidents
Revises: 0001_signal_tables
Create Date: 2026-11-22

Grouping is race-free across workers through unique constraints, not through locks held
in Python: one incident per (tenant, fingerprint) for ever (a recurrence reopens it as
regressed), and one occurrence per (tenant, occurrence key), the key being the trace id
(one trace belongs to exactly one incident) or, for a log without a trace, the log's
signal id. Status and severity are CHECKed against the two enums of analyzer/lifecycle.py.

`prodsentinel_span_is_error` is the SQL twin of analyzer/detection.py; it backs a partial
index that lets the sweeper find error spans without scanning the span partitions. It
must never raise (it runs on every COPY into spans), hence the CASE guards.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_incidents"
down_revision: str | None = "0001_signal_tables"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "('open', 'acknowledged', 'resolved', 'regressed')"
SEVERITIES = "('low', 'medium', 'high', 'critical')"

INCIDENTS = f"""
CREATE TABLE incidents (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    fingerprint text NOT NULL,
    title text NOT NULL,
    exception_type text NOT NULL,
    message_template text NOT NULL,
    service_name text NOT NULL,
    operation text NOT NULL,
    status text NOT NULL CHECK (status IN {STATUSES}),
    severity text NOT NULL CHECK (severity IN {SEVERITIES}),
    occurrence_count bigint NOT NULL DEFAULT 0 CHECK (occurrence_count >= 0),
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    last_recorded timestamptz NOT NULL,
    services text[] NOT NULL DEFAULT '{{}}',
    sample_trace_ids bytea[] NOT NULL DEFAULT '{{}}',
    acknowledged_by text,
    acknowledged_at timestamptz,
    resolved_by text,
    resolved_at timestamptz,
    resolution_note text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT incidents_fingerprint UNIQUE (tenant_id, fingerprint)
)
"""

OCCURRENCES = f"""
CREATE TABLE incident_occurrences (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    incident_id bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    occurrence_key bytea NOT NULL,
    trace_id bytea,
    origin_kind text NOT NULL CHECK (origin_kind IN ('span', 'log')),
    origin_signal_id bytea NOT NULL,
    origin_span_id bytea,
    service_name text NOT NULL,
    operation text NOT NULL,
    services text[] NOT NULL DEFAULT '{{}}',
    error_count integer NOT NULL,
    severity text NOT NULL CHECK (severity IN {SEVERITIES}),
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT incident_occurrences_key UNIQUE (tenant_id, occurrence_key)
)
"""

EVENTS = f"""
CREATE TABLE incident_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    incident_id bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('status', 'severity')),
    from_value text,
    to_value text NOT NULL,
    reason text NOT NULL,
    actor text NOT NULL,
    note text NOT NULL DEFAULT '',
    at timestamptz NOT NULL,
    CHECK (kind <> 'status' OR (to_value IN {STATUSES}
        AND (from_value IS NULL OR from_value IN {STATUSES}))),
    CHECK (kind <> 'severity' OR (to_value IN {SEVERITIES}
        AND (from_value IS NULL OR from_value IN {SEVERITIES})))
)
"""

SWEEPS = """
CREATE TABLE incident_sweeps (
    id smallint PRIMARY KEY CHECK (id = 1),
    swept_until timestamptz NOT NULL
)
"""


def _http_status_at_least_500(key: str) -> str:
    value = f"(attributes -> '{key}')"
    text = f"(attributes ->> '{key}')"
    return (
        f"(CASE jsonb_typeof({value}) WHEN 'number' THEN {value}::numeric "
        f"WHEN 'string' THEN CASE WHEN {text} ~ '^[0-9]{{1,3}}$' THEN {text}::numeric END "
        "END) >= 500"
    )


SPAN_IS_ERROR = f"""
CREATE FUNCTION prodsentinel_span_is_error(
    status_code integer, kind integer, events jsonb, attributes jsonb
) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT status_code = 2
        OR events @> '[{{"name": "exception"}}]'
        OR (kind = 2 AND coalesce(
            {_http_status_at_least_500("http.response.status_code")}
            OR {_http_status_at_least_500("http.status_code")}, false))
$$
"""


def upgrade() -> None:
    op.execute(INCIDENTS)
    op.execute(OCCURRENCES)
    op.execute(EVENTS)
    op.execute(SWEEPS)
    op.execute(
        "CREATE INDEX incidents_tenant_last_seen ON incidents (tenant_id, last_seen DESC, id DESC)"
    )
    op.execute(
        "CREATE INDEX incidents_active ON incidents (last_recorded) WHERE status <> 'resolved'"
    )
    op.execute(
        "CREATE INDEX incident_occurrences_incident "
        "ON incident_occurrences (incident_id, recorded_at)"
    )
    op.execute("CREATE INDEX incident_events_incident ON incident_events (incident_id, at)")
    op.execute(SPAN_IS_ERROR)
    op.execute(
        "CREATE INDEX spans_errors ON spans (start_time) "
        "WHERE prodsentinel_span_is_error(status_code, kind, events, attributes)"
    )
    op.execute("CREATE INDEX logs_errors ON logs (time) WHERE severity_number >= 17")


def downgrade() -> None:
    op.execute("DROP INDEX logs_errors")
    op.execute("DROP INDEX spans_errors")
    op.execute("DROP FUNCTION prodsentinel_span_is_error(integer, integer, jsonb, jsonb)")
    op.execute("DROP TABLE incident_sweeps")
    op.execute("DROP TABLE incident_events")
    op.execute("DROP TABLE incident_occurrences")
    op.execute("DROP TABLE incidents")
