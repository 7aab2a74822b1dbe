"""The query API (proto/prodsentinel/v1/query.proto): traces, logs, metrics, services.

service.py        gRPC servicer (thin): tenant, validate, query, assemble, statuses
validation.py     requests -> query values, or InvalidRequestError naming the field
pagination.py     opaque keyset page tokens
store.py          SQL: GetTrace, FindTraces, SearchLogs
catalog.py        SQL: GetServices, GetOperations, metric points
sql.py            read pool, WHERE builder, time bounds, database errors
otlp_assembly.py  rows -> TracesData / LogsData / TraceSummary (pure)
aggregation.py    metric points -> series (pure)
waterfall.py      a trace as an indented waterfall (pure)
terminal.py       the `prodsentinel trace/traces/logs/services` commands
bench.py          the query benchmark (5M spans)
"""

from __future__ import annotations

from typing import Any, Protocol


class Row(Protocol):
    """A stored row by column name (an asyncpg Record, or a dict in tests)."""

    def __getitem__(self, key: str, /) -> Any: ...
