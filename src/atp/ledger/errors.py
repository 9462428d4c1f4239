"""Domain outcomes that refuse a command. Each maps to one gRPC status at the transport edge."""

from __future__ import annotations

from dataclasses import dataclass

# Every ErrorInfo.reason the server sends, in one place: each refusal names one of these
# constants (tests/unit/test_error_reasons.py finds every reason in src/atp and fails on one
# missing here, or missing from the README's error table or protos/atp/v1/common.proto).
# Rejections of malformed or unknown input: their reason repeats the status code.
INVALID_ARGUMENT = "INVALID_ARGUMENT"
NOT_FOUND = "NOT_FOUND"
ALREADY_EXISTS = "ALREADY_EXISTS"
# The ledger's state refuses the command (FAILED_PRECONDITION).
RESERVATION_EXPIRED = "RESERVATION_EXPIRED"
INVALID_STATE = "INVALID_STATE"
NODE_INACTIVE = "NODE_INACTIVE"
SHIP_DATE_INFEASIBLE = "SHIP_DATE_INFEASIBLE"
INSUFFICIENT_AVAILABILITY = "INSUFFICIENT_AVAILABILITY"
INSUFFICIENT_ON_HAND = "INSUFFICIENT_ON_HAND"
QUANTITY_EXCEEDS_OPEN = "QUANTITY_EXCEEDS_OPEN"
# expected_version given and the reservation has changed since (AIP-154).
VERSION_MISMATCH = "VERSION_MISMATCH"
PLAN_STALE = "PLAN_STALE"
# The server cannot take the call now.
UNAVAILABLE = "UNAVAILABLE"
OVERLOADED = "OVERLOADED"
STORAGE_FULL = "STORAGE_FULL"
# The journal (Watch).
SEQUENCE_NOT_RETAINED = "SEQUENCE_NOT_RETAINED"
WATCHER_LAGGING = "WATCHER_LAGGING"
# Replication and clusters.
NOT_LEADER = "NOT_LEADER"
SNAPSHOT_REQUIRED = "SNAPSHOT_REQUIRED"
HISTORY_DIVERGED = "HISTORY_DIVERGED"
STALE_TERM = "STALE_TERM"
REPLICATION_GAP = "REPLICATION_GAP"
NOT_FOLLOWER = "NOT_FOLLOWER"
# Authorization (--auth-policy).
UNAUTHENTICATED = "UNAUTHENTICATED"
PERMISSION_DENIED = "PERMISSION_DENIED"


@dataclass(frozen=True)
class ReasonInfo:
    """What a caller gets with a reason: the gRPC status code (by name) and the keys the
    ErrorInfo's metadata may carry (some refusals of a reason carry only some of them)."""

    code: str
    metadata: tuple[str, ...] = ()


REASONS: dict[str, ReasonInfo] = {
    INVALID_ARGUMENT: ReasonInfo("INVALID_ARGUMENT"),
    NOT_FOUND: ReasonInfo("NOT_FOUND"),
    ALREADY_EXISTS: ReasonInfo("ALREADY_EXISTS"),
    INSUFFICIENT_AVAILABILITY: ReasonInfo("FAILED_PRECONDITION"),
    INSUFFICIENT_ON_HAND: ReasonInfo("FAILED_PRECONDITION"),
    QUANTITY_EXCEEDS_OPEN: ReasonInfo(
        "FAILED_PRECONDITION",
        ("reservation_id", "line_id", "open_quantity", "backordered_quantity", "parts")),
    RESERVATION_EXPIRED: ReasonInfo("FAILED_PRECONDITION", ("reservation_id", "state")),
    INVALID_STATE: ReasonInfo("FAILED_PRECONDITION", ("reservation_id", "supply_id", "state")),
    NODE_INACTIVE: ReasonInfo("FAILED_PRECONDITION", ("node_id",)),
    SHIP_DATE_INFEASIBLE: ReasonInfo("FAILED_PRECONDITION", ("line_id", "earliest_ship_date")),
    VERSION_MISMATCH: ReasonInfo(
        "FAILED_PRECONDITION", ("reservation_id", "version", "expected_version")),
    PLAN_STALE: ReasonInfo("FAILED_PRECONDITION", ("plan_sequence", "sequence")),
    UNAVAILABLE: ReasonInfo("UNAVAILABLE"),
    OVERLOADED: ReasonInfo("RESOURCE_EXHAUSTED", ("concurrent_rpcs_max",)),
    STORAGE_FULL: ReasonInfo("RESOURCE_EXHAUSTED"),
    SEQUENCE_NOT_RETAINED: ReasonInfo("OUT_OF_RANGE", ("oldest_sequence",)),
    WATCHER_LAGGING: ReasonInfo("RESOURCE_EXHAUSTED", ("resume_after_sequence",)),
    NOT_LEADER: ReasonInfo("FAILED_PRECONDITION", ("leader",)),
    SNAPSHOT_REQUIRED: ReasonInfo("FAILED_PRECONDITION", ("oldest_commit", "last_commit")),
    HISTORY_DIVERGED: ReasonInfo("FAILED_PRECONDITION", ("commit", "term")),
    STALE_TERM: ReasonInfo("FAILED_PRECONDITION", ("term", "holds_term")),
    REPLICATION_GAP: ReasonInfo("FAILED_PRECONDITION", ("commit", "holds")),
    NOT_FOLLOWER: ReasonInfo("FAILED_PRECONDITION"),
    UNAUTHENTICATED: ReasonInfo("UNAUTHENTICATED"),
    PERMISSION_DENIED: ReasonInfo("PERMISSION_DENIED", ("role_needed", "principal")),
}


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass(frozen=True)
class Shortfall:
    """One line or movement that lacks units: what was asked and what is available."""

    subject: str
    description: str
    requested: int
    available: int


class LedgerError(Exception):
    """A command was refused; the ledger is unchanged."""

    reason: str = ""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        """Pickles by its fields (the subclasses' __init__ take other arguments than the
        message), so that a refusal crosses a process boundary as it is."""
        return (_rebuilt, (type(self), self.__dict__))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), self.message))


def _rebuilt(error_type: type[LedgerError], fields: dict[str, object]) -> LedgerError:
    error = error_type.__new__(error_type)
    Exception.__init__(error, fields.get("message", ""))
    error.__dict__.update(fields)
    return error


class InvalidArgument(LedgerError):
    reason = INVALID_ARGUMENT

    def __init__(self, violations: list[FieldViolation]) -> None:
        text = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid request: {text}")
        self.violations = violations

    @classmethod
    def single(cls, field_path: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field_path, description)])


class NotFound(LedgerError):
    reason = NOT_FOUND

    def __init__(self, resource_type: str, resource_name: str) -> None:
        super().__init__(f"{resource_type} {resource_name!r} not found")
        self.resource_type = resource_type
        self.resource_name = resource_name


class AlreadyExists(LedgerError):
    reason = ALREADY_EXISTS

    def __init__(self, resource_type: str, resource_name: str) -> None:
        super().__init__(
            f"{resource_type} {resource_name!r} already exists with a different request"
        )
        self.resource_type = resource_type
        self.resource_name = resource_name


class FailedPrecondition(LedgerError):
    """The ledger's state does not allow the command (wrong state, inactive node, ...)."""

    def __init__(self, reason: str, message: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata = metadata or {}


class Shortage(FailedPrecondition):
    """Too few units for the command, one Shortfall per line or position that lacks them."""

    lacking = ""  # what there is not enough of, for the message

    def __init__(self, shortfalls: list[Shortfall]) -> None:
        text = "; ".join(s.description for s in shortfalls)
        super().__init__(self.reason, f"not enough {self.lacking}: {text}")
        self.shortfalls = shortfalls


class InsufficientAvailability(Shortage):
    reason = INSUFFICIENT_AVAILABILITY
    lacking = "available"


class InsufficientOnHand(Shortage):
    """More units would leave a node (shipped, shrunk, damaged) than are physically there."""

    reason = INSUFFICIENT_ON_HAND
    lacking = "on hand"


class Unavailable(LedgerError):
    """The engine cannot take the command now (shutting down, storage failed)."""

    reason = UNAVAILABLE


class ResourceExhausted(LedgerError):
    """Too much work is queued; the caller should back off and retry."""

    reason = OVERLOADED


class StorageFull(ResourceExhausted):
    """The data reached its size cap (or the filesystem is full): writes that add data are
    refused until retention or the operator frees space; nothing acknowledged is lost."""

    reason = STORAGE_FULL


class InvariantViolation(AssertionError):
    """A bug: the ledger reached a state that must never exist. The process must stop."""


# What decoding arbitrary stored bytes can raise: orjson's JSONDecodeError is a ValueError;
# well-formed JSON of the wrong shape fails on unpacking, indexing or an unknown enum value.
DECODE_FAILURES: tuple[type[Exception], ...] = (
    ValueError, TypeError, KeyError, IndexError, AttributeError,
)


class DamagedRecordError(Exception):
    """A stored record does not decode: the data is damaged, not the command (no LedgerError).

    Raised while rebuilding a ledger, so that a start-up names the record instead of dying
    with a traceback.
    """

    def __init__(self, database: str, key: bytes, reason: BaseException) -> None:
        shown_key = key.decode(errors="backslashreplace")
        super().__init__(
            f"the stored {database} record {shown_key!r} does not decode ({reason})"
        )
        self.database = database
        self.key = key
