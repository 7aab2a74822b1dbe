"""Triage: analysis_results, one row per analysis of an incident (tier 1 or tier 2).

Revision ID: 0005_analysis_results
Revises: 0003_incidents
Create Date: 2026-11-22

An analysis is keyed by (incident, tier, trigger): the trigger says why it ran ("created"
for a new incident, "severity:<level>" when the incident's severity rose), so a
redelivered message or a second worker inserts nothing new (ON CONFLICT DO NOTHING).
Tier 2 rows name their provider and model; tier 1 needs neither. The result is the
analysis as a JSON object; a failed analysis keeps its error text.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_analysis_results"
down_revision: str | None = "0003_incidents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANALYSIS_RESULTS = """
CREATE TABLE analysis_results (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    incident_id bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    tier smallint NOT NULL CHECK (tier IN (1, 2)),
    trigger text NOT NULL CHECK (trigger <> ''),
    status text NOT NULL CHECK (status IN ('ok', 'failed', 'skipped')),
    provider text,
    model text,
    prompt_hash text,
    input_tokens integer NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens integer NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    latency_ms double precision NOT NULL DEFAULT 0 CHECK (latency_ms >= 0),
    result jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(result) = 'object'),
    error text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (tier = 1 OR (provider IS NOT NULL AND model IS NOT NULL)),
    CHECK (status <> 'failed' OR error <> ''),
    CONSTRAINT analysis_results_trigger UNIQUE (incident_id, tier, trigger)
)
"""


def upgrade() -> None:
    op.execute(ANALYSIS_RESULTS)
    op.execute(
        "CREATE INDEX analysis_results_incident ON analysis_results (incident_id, created_at)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE analysis_results")
