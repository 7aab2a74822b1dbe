"""The one errors module: a root error, retryable vs permanent kinds, and their gRPC statuses."""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


class ProdSentinelError(Exception):
    """Root of every error this project raises on purpose."""


class SettingsError(ProdSentinelError):
    """A configuration value is missing or malformed; names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable} {problem}")
        self.variable = variable


class RetryableError(ProdSentinelError):
    """The data was not stored, but the same request will succeed later (database down/slow)."""

    grpc_code = code_pb2.UNAVAILABLE

    def __init__(self, message: str, retry_after_seconds: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class BackpressureError(RetryableError):
    """Too much is pending already; the client should back off instead of us growing memory."""

    grpc_code = code_pb2.RESOURCE_EXHAUSTED


class PermanentError(ProdSentinelError):
    """Retrying the same request cannot succeed."""


class NotFoundError(PermanentError):
    """The thing asked for does not exist for this tenant (NOT_FOUND)."""

    grpc_code = code_pb2.NOT_FOUND


class FailedPreconditionError(PermanentError):
    """The request is valid but not in the object's current state (FAILED_PRECONDITION)."""

    grpc_code = code_pb2.FAILED_PRECONDITION


class DeadlineError(PermanentError):
    """The work ran past its time budget; the same request would again (DEADLINE_EXCEEDED)."""

    grpc_code = code_pb2.DEADLINE_EXCEEDED


class InvalidRequestError(PermanentError):
    """A request-level field is invalid (not an item: items get partial success)."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


def to_grpc_status(error: ProdSentinelError) -> grpc.Status:
    """Turn an error into a rich gRPC status (RetryInfo / BadRequest details) for `abort_with_status`."""
    if isinstance(error, RetryableError):
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_seconds * 1e9))
        detail = error_details_pb2.RetryInfo(retry_delay=delay)
        return _status(error.grpc_code, str(error), detail)
    if isinstance(error, InvalidRequestError):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.description
        )
        return _status(
            code_pb2.INVALID_ARGUMENT,
            str(error),
            error_details_pb2.BadRequest(field_violations=[violation]),
        )
    if isinstance(error, NotFoundError | FailedPreconditionError | DeadlineError):
        return _status(error.grpc_code, str(error), None)
    return _status(code_pb2.INTERNAL, str(error), None)


def _status(code: int, message: str, detail: Message | None) -> grpc.Status:
    status = status_pb2.Status(code=code, message=message)
    if detail is not None:
        status.details.add().Pack(detail)
    return rpc_status.to_status(status)  # type: ignore[no-any-return]
