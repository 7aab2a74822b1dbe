"""Error detection: which stored signals are errors. Pure and cheap, it runs in the ingest path.

A span is an error when its status is ERROR, when it has an `exception` event, or when it
is a server span whose HTTP status (`http.response.status_code`, or the older
`http.status_code`) is >= 500. A log record is an error when its severity_number is >= 17
(ERROR). Metrics never are (out of scope). The same rules exist in SQL for the sweeper
(`prodsentinel_span_is_error` in alembic/versions/0003_incidents.py); a test holds the two
to agreement.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from receiver.mapping.rows import LOG_COLUMNS, PG_EPOCH_OFFSET_US, SPAN_COLUMNS

STATUS_CODE_ERROR = 2
SPAN_KIND_SERVER = 2
ERROR_SEVERITY_NUMBER = 17
HTTP_STATUS_KEYS = ("http.response.status_code", "http.status_code")
EXCEPTION_EVENT = "exception"
_HTTP_STATUS_TEXT = re.compile(r"[0-9]{1,3}")

_S = {name: index for index, name in enumerate(SPAN_COLUMNS)}
_L = {name: index for index, name in enumerate(LOG_COLUMNS)}


def http_status(value: Any) -> float | None:
    """An HTTP status attribute as a number (ints, finite doubles, or 1-3 digit strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _HTTP_STATUS_TEXT.fullmatch(value):
        return float(value)
    return None


def span_is_error(
    status_code: int, kind: int, events: Sequence[Any], attributes: Mapping[str, Any]
) -> bool:
    """The span rules, on parsed events and attributes."""
    if status_code == STATUS_CODE_ERROR:
        return True
    if any(isinstance(e, Mapping) and e.get("name") == EXCEPTION_EVENT for e in events):
        return True
    if kind == SPAN_KIND_SERVER:
        for key in HTTP_STATUS_KEYS:
            code = http_status(attributes.get(key))
            if code is not None and code >= 500:
                return True
    return False


def log_is_error(severity_number: int) -> bool:
    return severity_number >= ERROR_SEVERITY_NUMBER


def span_row_is_error(row: Sequence[object]) -> bool:
    """The span rules on a mapped row (JSON still as bytes): parses only when it might matter."""
    if row[_S["status_code"]] == STATUS_CODE_ERROR:
        return True
    events = row[_S["events"]]
    if isinstance(events, bytes) and b'"exception"' in events:
        parsed = orjson.loads(events)
        if span_is_error(0, 0, parsed, {}):
            return True
    if row[_S["kind"]] == SPAN_KIND_SERVER:
        attributes = row[_S["attributes"]]
        if isinstance(attributes, bytes) and b"status_code" in attributes:
            return span_is_error(0, SPAN_KIND_SERVER, (), orjson.loads(attributes))
    return False


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorLog:
    """A committed error log row, as the trigger needs it."""

    tenant_id: str
    trace_id: bytes | None
    time_unix_us: int
    service_name: str
    scope_name: str
    severity_number: int
    severity_text: str
    body: Any
    attributes: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class DetectedErrors:
    """Error signals of one committed batch: traces to analyse, and logs without a trace."""

    traces: set[tuple[str, bytes]] = dataclasses.field(default_factory=set)
    traceless_logs: list[ErrorLog] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.traces or self.traceless_logs)


def detect_errors(batch: Iterable[tuple[str, Sequence[Sequence[object]]]]) -> DetectedErrors:
    """Find the error signals in a committed batch of `(table, rows)`."""
    found = DetectedErrors()
    for table, rows in batch:
        if table == "spans":
            tenant_at, trace_at = _S["tenant_id"], _S["trace_id"]
            for row in rows:
                trace_id = row[trace_at]
                if isinstance(trace_id, bytes) and span_row_is_error(row):
                    found.traces.add((str(row[tenant_at]), trace_id))
        elif table == "logs":
            severity_at = _L["severity_number"]
            for row in rows:
                severity = row[severity_at]
                if isinstance(severity, int) and log_is_error(severity):
                    _add_log(found, row)
    return found


def _add_log(found: DetectedErrors, row: Sequence[object]) -> None:
    tenant = str(row[_L["tenant_id"]])
    trace_id = row[_L["trace_id"]]
    if isinstance(trace_id, bytes) and trace_id:
        found.traces.add((tenant, trace_id))
        return
    body, attributes = row[_L["body"]], row[_L["attributes"]]
    found.traceless_logs.append(
        ErrorLog(
            tenant_id=tenant,
            trace_id=None,
            time_unix_us=int(row[_L["time"]]) + PG_EPOCH_OFFSET_US,  # type: ignore[call-overload]
            service_name=str(row[_L["service_name"]]),
            scope_name=str(row[_L["scope_name"]]),
            severity_number=int(row[_L["severity_number"]]),  # type: ignore[call-overload]
            severity_text=str(row[_L["severity_text"]]),
            body=orjson.loads(body) if isinstance(body, bytes) else body,
            attributes=orjson.loads(attributes) if isinstance(attributes, bytes) else {},
        )
    )
