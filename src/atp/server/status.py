"""One table from domain errors to gRPC status codes and google.rpc details (AIP-193)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from atp.ledger.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    LedgerError,
    NotFound,
    ResourceExhausted,
    Shortage,
    Unavailable,
)

DOMAIN = "atp.v1"
DETAILS_KEY = "grpc-status-details-bin"

_CODES: list[tuple[type[LedgerError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
]


def status_code(error: LedgerError) -> grpc.StatusCode:
    from atp.engine.events import OutOfRange, WatcherLagging

    if isinstance(error, OutOfRange):
        return grpc.StatusCode.OUT_OF_RANGE
    if isinstance(error, WatcherLagging):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    for error_type, code in _CODES:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.INTERNAL


async def abort(context: grpc.aio.ServicerContext, error: LedgerError) -> None:
    """Ends the call with the error's status code and rich details (raises)."""
    rich = rich_status(error)
    await context.abort(status_code(error), rich.message, trailing_metadata=trailing_metadata(rich))


def rich_status(error: LedgerError) -> status_pb2.Status:
    """The google.rpc.Status of a refused command: code, message and typed details."""
    code = status_code(error)
    status = status_pb2.Status(code=code.value[0], message=error.message)
    for detail in _details(error):
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return status


def trailing_metadata(status: status_pb2.Status) -> tuple[tuple[str, bytes], ...]:
    return ((DETAILS_KEY, status.SerializeToString()),)


def _details(error: LedgerError) -> list[Message]:
    metadata = getattr(error, "metadata", {})
    details: list[Message] = [
        error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata)
    ]
    if isinstance(error, InvalidArgument):
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
    elif isinstance(error, (NotFound, AlreadyExists)):
        details.append(
            error_details_pb2.ResourceInfo(
                resource_type=error.resource_type, resource_name=error.resource_name,
                description=error.message,
            )
        )
    elif isinstance(error, Shortage):
        details.append(
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=error.reason,
                        subject=shortfall.subject,
                        description=shortfall.description,
                    )
                    for shortfall in error.shortfalls
                ]
            )
        )
    elif isinstance(error, FailedPrecondition):
        details.append(
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=error.reason, subject=_subject(metadata), description=error.message,
                    )
                ]
            )
        )
    return details


# What a failed precondition is about, most specific first, from the error's metadata.
_SUBJECT_KEYS = ("reservation_id", "line_id", "hold_id", "supply_id", "node_id", "sku")


def _subject(metadata: dict[str, str]) -> str:
    return next((metadata[key] for key in _SUBJECT_KEYS if metadata.get(key)), "")
