"""Indexes for the query API: traces and logs by time without a service, operations.

Revision ID: 0002_query_indexes
Revises: 0001_signal_tables
Create Date: 2026-11-22

- spans (tenant_id, start_time): FindTraces without a service walks a tenant's spans
  newest first (with a service it uses spans_service_time from 0001);
- spans (tenant_id, service_name, name, kind, start_time): GetOperations jumps from one
  distinct (name, kind) to the next (a loose index scan), and FindTraces by service and
  a rare operation reads only that operation's spans;
- logs (tenant_id, time): SearchLogs without a service, newest first.

GetTrace needs nothing new: spans_identity (tenant_id, trace_id, ...) answers it, and
logs_trace (tenant_id, trace_id) the trace's logs. Indexes on the partitioned parents
are created on every partition, present and future. (CREATE INDEX CONCURRENTLY does not
exist for partitioned tables: on a large existing database this migration holds a
SHARE lock on each table while it builds, blocking writes for that time.)
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_query_indexes"
down_revision: str | None = "0001_signal_tables"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "spans_tenant_time": "spans (tenant_id, start_time)",
    "spans_operations": "spans (tenant_id, service_name, name, kind, start_time)",
    "logs_tenant_time": "logs (tenant_id, time)",
}


def upgrade() -> None:
    for name, definition in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON {definition}")


def downgrade() -> None:
    for name in reversed(INDEXES):
        op.execute(f"DROP INDEX {name}")
