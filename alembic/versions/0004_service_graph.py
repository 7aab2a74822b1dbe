"""Service graph: services, service_dependencies (+ hourly stats), circular_dependency_alerts.

Revision ID: 0004_service_graph
Revises: 0001_signal_tables
Create Date: 2026-11-22

Discovered from the spans by analyzer/graph (periodic upkeep, not on the ingest path):

- services: one row per (tenant, name): instrumented services from resource
  `service.name`, and the uninstrumented peers their client spans name (databases,
  brokers, external hosts). Team, criticality and description are set by a person;
  `updated_at` is kept by a trigger and moves when anything but `last_seen` changes.
- service_dependencies: caller -> callee, unique per (tenant, source, target, discovery
  source), with cumulative counts and a mergeable latency histogram; the composite
  foreign keys keep both ends in the edge's tenant. Partial indexes on the live edges
  serve traversals in both directions.
- service_dependency_stats: the same counters per edge and UTC hour (time-range graphs).
- circular_dependency_alerts: one row per canonical cycle path (unique per tenant
  through `cycle_key`, a hash, as a path may be longer than a btree entry allows).
- service_graph_watermark: how far the aggregation has read spans (by end_time).
- spans_end_time_brin: the aggregation reads spans by end_time; a BRIN index is tiny and
  nearly free to maintain on append-mostly, time-ordered partitions.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_service_graph"
down_revision: str | None = "0001_signal_tables"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CRITICALITIES = "('low', 'medium', 'high', 'critical')"
KINDS = "('service', 'database', 'messaging', 'external')"
DISCOVERY_SOURCES = "('trace', 'peer_service', 'db_system', 'messaging_system', 'server_address')"

SERVICES = f"""
CREATE TABLE services (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN {KINDS}),
    instrumented boolean NOT NULL,
    namespace text NOT NULL DEFAULT '',
    environment text NOT NULL DEFAULT '',
    team text,
    criticality text CHECK (criticality IN {CRITICALITIES}),
    description text,
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT services_name UNIQUE (tenant_id, name),
    CONSTRAINT services_tenant_id UNIQUE (tenant_id, id)
)
"""

DEPENDENCIES = f"""
CREATE TABLE service_dependencies (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    source_id bigint NOT NULL,
    target_id bigint NOT NULL,
    discovery_source text NOT NULL CHECK (discovery_source IN {DISCOVERY_SOURCES}),
    communication_mode text NOT NULL CHECK (communication_mode IN ('sync', 'async')),
    protocol text NOT NULL CHECK (protocol IN ('http', 'grpc', 'db', 'messaging', 'other')),
    confidence double precision NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    call_count bigint NOT NULL CHECK (call_count >= 0),
    error_count bigint NOT NULL CHECK (error_count >= 0 AND error_count <= call_count),
    latency_sum_ms double precision NOT NULL,
    latency_min_ms double precision,
    latency_max_ms double precision,
    latency_buckets bigint[] NOT NULL,
    first_observed_at timestamptz NOT NULL,
    last_observed_at timestamptz NOT NULL,
    is_stale boolean NOT NULL DEFAULT false,
    CONSTRAINT service_dependencies_edge UNIQUE (tenant_id, source_id, target_id, discovery_source),
    CONSTRAINT service_dependencies_no_self_loop CHECK (source_id <> target_id),
    FOREIGN KEY (tenant_id, source_id) REFERENCES services (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, target_id) REFERENCES services (tenant_id, id) ON DELETE CASCADE
)
"""

STATS = """
CREATE TABLE service_dependency_stats (
    edge_id bigint NOT NULL REFERENCES service_dependencies (id) ON DELETE CASCADE,
    bucket timestamptz NOT NULL,
    call_count bigint NOT NULL,
    error_count bigint NOT NULL,
    latency_sum_ms double precision NOT NULL,
    latency_min_ms double precision,
    latency_max_ms double precision,
    latency_buckets bigint[] NOT NULL,
    PRIMARY KEY (edge_id, bucket)
)
"""

ALERTS = """
CREATE TABLE circular_dependency_alerts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    cycle_key text NOT NULL,
    cycle_path text[] NOT NULL CHECK (cardinality(cycle_path) >= 2),
    status text NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    first_detected_at timestamptz NOT NULL,
    detected_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    resolved_at timestamptz,
    CONSTRAINT circular_dependency_alerts_cycle UNIQUE (tenant_id, cycle_key),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
)
"""

WATERMARK = """
CREATE TABLE service_graph_watermark (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    processed_until timestamptz NOT NULL
)
"""

TOUCH = """
CREATE FUNCTION prodsentinel_services_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- last_seen moves on every aggregation; updated_at says when the record itself changed.
    IF to_jsonb(NEW) - 'last_seen' - 'updated_at' IS DISTINCT FROM
       to_jsonb(OLD) - 'last_seen' - 'updated_at' THEN
        NEW.updated_at := now();
    ELSE
        NEW.updated_at := OLD.updated_at;
    END IF;
    RETURN NEW;
END $$
"""

INDEXES = {
    "service_dependencies_live_out": (
        "service_dependencies (source_id, target_id) WHERE NOT is_stale"
    ),
    "service_dependencies_live_in": "service_dependencies (target_id, source_id) WHERE NOT is_stale",
    "service_dependencies_in": "service_dependencies (tenant_id, target_id, source_id)",
    "service_dependencies_live_observed": (
        "service_dependencies (last_observed_at) WHERE NOT is_stale"
    ),
    "service_dependencies_stale_observed": "service_dependencies (last_observed_at) WHERE is_stale",
    "service_dependency_stats_bucket": "service_dependency_stats (bucket)",
    "circular_dependency_alerts_active": (
        "circular_dependency_alerts (tenant_id) WHERE status <> 'resolved'"
    ),
}


def upgrade() -> None:
    op.execute(SERVICES)
    op.execute(DEPENDENCIES)
    op.execute(STATS)
    op.execute(ALERTS)
    op.execute(WATERMARK)
    op.execute(TOUCH)
    op.execute(
        "CREATE TRIGGER services_touch BEFORE UPDATE ON services "
        "FOR EACH ROW EXECUTE FUNCTION prodsentinel_services_touch()"
    )
    for name, definition in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON {definition}")
    op.execute(
        "CREATE INDEX spans_end_time_brin ON spans USING brin (end_time) "
        "WITH (pages_per_range = 32, autosummarize = on)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX spans_end_time_brin")
    op.execute("DROP TABLE service_graph_watermark")
    op.execute("DROP TABLE circular_dependency_alerts")
    op.execute("DROP TABLE service_dependency_stats")
    op.execute("DROP TABLE service_dependencies")
    op.execute("DROP TABLE services")
    op.execute("DROP FUNCTION prodsentinel_services_touch()")
