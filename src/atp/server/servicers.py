"""gRPC servicers: protobuf to commands, commands to the writer, results back to protobuf.

Every answer is built at once, from one consistent state (between awaits nothing else changes
the ledger), and sent only once everything that state rests on is durable: a mutation's answer
shows the state it made, not a later one, and a read never shows what a crash could take back.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from atp import limits
from atp.engine.events import EventFilter, EventHub
from atp.engine.listing import SCAN_BUDGET, ReservationFilter, list_reservations
from atp.engine.writer import Writer
from atp.ledger import Ledger, Outcome, Refused, Result, commands, day_of
from atp.ledger.errors import InvalidArgument, InvariantViolation, LedgerError, Unavailable
from atp.ledger.model import (
    EVENT_TYPES,
    Hold,
    Node,
    Position,
    Reservation,
    ReservationState,
    Supply,
)
from atp.ledger.reallocation import ReallocationResult, Scope
from atp.ledger.validation import Violations
from atp.persistence.archive import ServerArchive
from atp.server import channel_views, convert, status
from atp.server.authorization import caller_name
from atp.server.command_link import CommandLink
from atp.server.decoding import Undecodable, read_options
from atp.server.status import abort
from atp.v1 import (
    availability_pb2,
    availability_pb2_grpc,
    common_pb2,
    events_pb2,
    events_pb2_grpc,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)

T = TypeVar("T")
R = TypeVar("R")
# The trailing metadata key of a write's commit (see stamp_commit).
COMMIT_SEQUENCE_KEY = "atp-commit-sequence"
# ...and the term of the leader that confirmed it, and that leader's address (so that a
# client, or a test, can tell which member confirmed what, in which term).
TERM_KEY = "atp-term"
MEMBER_KEY = "atp-member"
# The longest a read waits for its min_sequence, whatever its deadline.
READ_WAIT_MAX_S = 30.0
# How long before the call's deadline a read gives up waiting, to answer UNAVAILABLE (this
# member is behind: retry, or read elsewhere) rather than let the deadline expire.
READ_DEADLINE_MARGIN_S = 0.2
# A stream message's answer, once durable.
_StreamItem = Awaitable[reservations_pb2.ReserveResult]


class LedgerServicer:
    """What the three ledger services share: the writer, how a mutation is applied and
    answered, how a read is answered once durable, and the position message."""

    def __init__(self, writer: Writer, address: str = "") -> None:
        self.writer = writer
        self.address = address  # this member's advertised HOST:PORT
        # Where commands go: the writer itself, or on a gateway of `atpd --gateways N` the
        # link to the writer process (reads still come from `writer`, the gateway's copy).
        self.mutations: Writer | CommandLink = writer

    @property
    def ledger(self) -> Ledger:
        """The writer's ledger now (a follower's is replaced when it installs a snapshot)."""
        return self.writer.ledger

    @property
    def archive(self) -> ServerArchive | None:
        archive = self.writer.ledger.archive
        return archive if isinstance(archive, ServerArchive) else None

    async def _mutate(
        self, context: grpc.aio.ServicerContext, kind: type[R],
        build: Callable[[], commands.Command], present: Callable[[R], T],
    ) -> T:
        """Builds the command (conversion errors are INVALID_ARGUMENT), applies it, presents its
        result (a `kind`) at once and answers that once durable; a refusal ends the call with
        its status."""
        try:
            answer = await self.mutations.execute(
                build(), presenting(kind, present), principal=caller_name())
        except LedgerError as error:  # not a command; or overloaded, stopping
            await abort(context, error)
            raise  # unreachable: abort raises
        if isinstance(answer, Refused):
            await abort(context, answer.error)
            raise InvariantViolation("unreachable: abort raises")
        self._stamp(context, answer)
        return answer

    def _stamp(self, context: grpc.aio.ServicerContext, answer: object) -> None:
        stamp_commit(context, answer, self.mutations.commit_index, self.mutations.term,
                     self.address)

    async def _read(
        self, context: grpc.aio.ServicerContext, read: Callable[[], T], request: Any = None
    ) -> T:
        """Answers from memory as it is now, once all of it is durable (Watch likewise shows
        only committed events): what a reader is shown, a crash cannot take back. With the
        request's min_sequence, first waits until this member holds that commit (read your
        writes). Its consistency is checked only: this process's memory is the newest
        there is here, so STALE and LINEARIZABLE read the same (gateways tell them apart)."""
        try:
            min_sequence = read_options(request)
            if min_sequence > self.writer.commit_index:
                if self.writer.leader_address is None:  # the leader makes every commit
                    raise InvalidArgument.single(
                        "min_sequence", f"commit {min_sequence} has not been made; the newest "
                        f"is {self.writer.commit_index}")
                remaining = context.time_remaining() if context is not None else None
                wait_s = READ_WAIT_MAX_S if remaining is None else min(
                    remaining - READ_DEADLINE_MARGIN_S, READ_WAIT_MAX_S)
                await self.writer.until_commit(min_sequence, wait_s)
            self.writer.check_readable()
            answer = read()
            await self.writer.until_applied_durable()
        except LedgerError as error:
            await abort(context, error)
            raise  # unreachable: abort raises
        return answer

    def _today(self) -> int:
        return day_of(self.writer.clock())

    def _position_message(
        self, position: Position, today: int, include_safety: bool = False, timeline: bool = False
    ) -> common_pb2.Position:
        node = self.ledger.nodes.get(position.node_id)
        return convert.position_message(position, today, include_safety, timeline,
                                        node_active=node is None or node.active)


class InventoryServicer(LedgerServicer, inventory_pb2_grpc.InventoryServicer):
    async def UpsertNode(
        self, request: inventory_pb2.UpsertNodeRequest, context: Any
    ) -> common_pb2.Node:
        return await self._mutate(
            context, Node, lambda: convert.upsert_node(request), convert.node_message
        )

    async def ListNodes(
        self, request: inventory_pb2.ListNodesRequest, context: Any
    ) -> inventory_pb2.ListNodesResponse:
        return await self._read(context, lambda: inventory_pb2.ListNodesResponse(
            nodes=[convert.node_message(node) for node in self.ledger.nodes.values()]
        ), request)

    async def AdjustStock(
        self, request: inventory_pb2.AdjustStockRequest, context: Any
    ) -> inventory_pb2.AdjustStockResponse:
        def present(positions: list[Position]) -> inventory_pb2.AdjustStockResponse:
            today = self._today()
            return inventory_pb2.AdjustStockResponse(
                positions=[self._position_message(p, today) for p in positions]
            )

        return await self._mutate(context, list, lambda: convert.adjust_stock(request), present)

    async def SetSafetyStock(
        self, request: inventory_pb2.SetSafetyStockRequest, context: Any
    ) -> common_pb2.Position:
        return await self._mutate(
            context, Position,
            lambda: commands.SetSafetyStock(request.sku, request.node_id, request.quantity),
            lambda position: self._position_message(position, self._today()),
        )

    async def UpsertSupply(
        self, request: inventory_pb2.UpsertSupplyRequest, context: Any
    ) -> common_pb2.Supply:
        return await self._mutate(
            context, Supply, lambda: convert.upsert_supply(request), convert.supply_message)

    async def ReceiveSupply(
        self, request: inventory_pb2.ReceiveSupplyRequest, context: Any
    ) -> common_pb2.Supply:
        return await self._mutate(
            context, Supply,
            lambda: commands.ReceiveSupply(request.request_id, request.supply_id, request.quantity),
            convert.supply_message,
        )

    async def ListSupply(
        self, request: inventory_pb2.ListSupplyRequest, context: Any
    ) -> inventory_pb2.ListSupplyResponse:
        def matches(supply: Any) -> bool:
            return (
                (not request.sku or supply.sku == request.sku)
                and (not request.node_id or supply.node_id == request.node_id)
                and (request.include_closed or supply.quantity > 0)
            )

        def read() -> inventory_pb2.ListSupplyResponse:
            page, token = paginate("supply", self.ledger.supplies, matches, request)
            return inventory_pb2.ListSupplyResponse(
                supplies=[convert.supply_message(s) for s in page], next_page_token=token
            )

        return await self._read(context, read, request)

    async def PlaceHold(
        self, request: inventory_pb2.PlaceHoldRequest, context: Any
    ) -> common_pb2.Hold:
        return await self._mutate(
            context, Hold, lambda: convert.place_hold(request), convert.hold_message
        )

    async def ReleaseHold(
        self, request: inventory_pb2.ReleaseHoldRequest, context: Any
    ) -> common_pb2.Hold:
        return await self._mutate(
            context, Hold, lambda: commands.ReleaseHold(request.hold_id), convert.hold_message
        )

    async def ListHolds(
        self, request: inventory_pb2.ListHoldsRequest, context: Any
    ) -> inventory_pb2.ListHoldsResponse:
        def matches(hold: Any) -> bool:
            return (
                hold.active
                and (not request.sku or hold.sku == request.sku)
                and (not request.node_id or hold.node_id == request.node_id)
            )

        def read() -> inventory_pb2.ListHoldsResponse:
            page, token = paginate("holds", self.ledger.holds, matches, request)
            return inventory_pb2.ListHoldsResponse(
                holds=[convert.hold_message(h) for h in page], next_page_token=token
            )

        return await self._read(context, read, request)


class AvailabilityServicer(LedgerServicer, availability_pb2_grpc.AvailabilityServicer):
    async def GetAvailability(
        self, request: availability_pb2.GetAvailabilityRequest, context: Any
    ) -> availability_pb2.GetAvailabilityResponse:
        return await self._read(context, lambda: self._availability(request), request)

    def _availability(
        self, request: availability_pb2.GetAvailabilityRequest
    ) -> availability_pb2.GetAvailabilityResponse:
        check_availability_request(request)
        for node_id in request.node_ids:
            self.ledger.node(node_id)
        today = self._today()
        include_safety = self.ledger.include_safety_stock(request.priority)
        by_sku: dict[str, list[common_pb2.Position]] = {}
        totals: dict[str, availability_pb2.NetworkAvailability] = {}
        for sku in request.skus:
            by_node = self.ledger.known_sku(sku)
            chosen = (
                [by_node[n] for n in sorted(set(request.node_ids)) if n in by_node]
                if request.node_ids
                else [by_node[n] for n in sorted(by_node)]
            )
            # With channel allocations: each channel's standing, and `available` as
            # request.channel sees it (channel_views).
            by_sku[sku], totals[sku] = channel_views.sku_availability(
                self.ledger, sku, chosen, request.channel, today, include_safety,
                lambda p: self._position_message(p, today, include_safety,
                                                 request.include_timeline))
        return availability_pb2.GetAvailabilityResponse(
            positions=[message for sku in sorted(by_sku) for message in by_sku[sku]],
            totals=[totals[sku] for sku in request.skus],
        )


    async def Promise(
        self, request: availability_pb2.PromiseRequest, context: Any
    ) -> availability_pb2.PromiseResponse:
        def read() -> availability_pb2.PromiseResponse:
            plan = self.ledger.promise(
                convert.order_lines(request.lines), request.destination_region,
                convert.policy(request.policy), request.priority, self.writer.clock(),
                explain=request.explain, channel=request.channel,
            )
            return convert.promise_response(plan)

        return await self._read(context, read, request)


class ReservationsServicer(LedgerServicer, reservations_pb2_grpc.ReservationsServicer):
    def __init__(self, writer: Writer, address: str = "") -> None:
        super().__init__(writer, address)
        self._stream_readers: set[asyncio.Task[None]] = set()
        self.streams_ending = False

    async def Reserve(
        self, request: reservations_pb2.ReserveRequest, context: Any
    ) -> common_pb2.Reservation:
        return await self._mutate(
            context, Reservation, lambda: convert.reserve(request), convert.reservation_message)

    async def ReserveBatch(
        self, request: reservations_pb2.ReserveBatchRequest, context: Any
    ) -> reservations_pb2.ReserveBatchResponse:
        count = len(request.requests)
        if not 1 <= count <= limits.batch_requests_max:
            await abort(context, InvalidArgument.single(
                "requests", f"{count} requests; 1..{limits.batch_requests_max} allowed"))
        built = [reserve_command(item) for item in request.requests]
        accepted = [item for item in built if not isinstance(item, Refused)]
        response = reservations_pb2.ReserveBatchResponse()
        awaiting: list[reservations_pb2.ReserveResult] = []  # the accepted items' results
        for item, item_built in zip(request.requests, built):
            result = response.results.add(reservation_id=item.reservation_id)
            if isinstance(item_built, Refused):
                fill_reserve_result(result, item.reservation_id, item_built)
            else:
                awaiting.append(result)
        unfilled = iter(awaiting)

        def present(outcome: Outcome) -> None:  # in place: batches hold 1,000 reservations
            result = next(unfilled)
            fill_reserve_result(result, result.reservation_id, outcome)

        try:
            await self.mutations.execute_each(accepted, present, caller_name())
        except LedgerError as error:  # overloaded or stopping; or storage failed meanwhile
            await abort(context, error)
        self._stamp(context, response)
        return response

    async def ReserveStream(
        self, request_iterator: AsyncIterator[reservations_pb2.ReserveRequest], context: Any
    ) -> AsyncIterator[reservations_pb2.ReserveResult]:
        """Applies each message as it arrives; answers in order, each once it is durable.

        Messages are not serialised on durability: while one waits for its group commit the
        next ones are already applied, so many in flight on one stream share a commit.
        """
        in_flight: asyncio.Queue[_StreamItem | None] = asyncio.Queue(limits.stream_in_flight_max)

        async def read_requests() -> None:
            applied: _StreamItem | None = None
            try:
                async for request in request_iterator:
                    applied = self._apply_reserve(request)
                    await in_flight.put(applied)
                    applied = None
            finally:
                # Also when reading fails, or stops at shutdown (end_streams): the answers
                # already applied still go out, then `await reader` below raises the failure
                # instead of the stream hanging.
                if applied is not None:
                    await in_flight.put(applied)
                await in_flight.put(None)

        reader = asyncio.create_task(read_requests())
        self._stream_readers.add(reader)
        try:
            if self.streams_ending:
                reader.cancel()
            while (item := await in_flight.get()) is not None:
                result = await item
                result.commit_sequence = self.mutations.commit_index
                yield result
            await asyncio.wait((reader,))
            if reader.cancelled():  # only end_streams cancels it while the call goes on
                await abort(context, Unavailable(
                    "the server is shutting down; every message answered on this stream was "
                    "applied, none after them: open a new stream once it is back"))
            await reader
        finally:
            self._stream_readers.discard(reader)
            reader.cancel()

    def end_streams(self) -> None:
        """At shutdown: every ReserveStream stops reading, answers what it applied, and ends
        UNAVAILABLE, so that draining calls does not wait on them."""
        self.streams_ending = True
        for reader in self._stream_readers:
            reader.cancel()

    def _apply_reserve(self, request: reservations_pb2.ReserveRequest | Undecodable) -> _StreamItem:
        """Submits one stream message now (no task of its own: messages apply in the order
        they arrive); its answer, built as it is applied, goes out once durable."""
        if isinstance(request, Undecodable):  # fails this message only, as any bad message does
            return _ready(reserve_result("", Refused(request.error())))
        built = reserve_command(request)
        if isinstance(built, Refused):
            return _ready(reserve_result(request.reservation_id, built))
        reservation_id = request.reservation_id
        return self.mutations.submit(
            built, lambda outcome: reserve_result(reservation_id, outcome), caller_name())

    async def Commit(
        self, request: reservations_pb2.CommitRequest, context: Any
    ) -> common_pb2.Reservation:
        return await self._mutate(
            context, Reservation,
            lambda: commands.Commit(request.reservation_id, request.request_id,
                                    request.expected_version),
            convert.reservation_message,
        )

    async def Release(
        self, request: reservations_pb2.ReleaseRequest, context: Any
    ) -> common_pb2.Reservation:
        return await self._mutate(
            context, Reservation,
            lambda: commands.Release(
                request.reservation_id, request.request_id,
                convert.line_quantities(request.lines), request.expected_version,
            ),
            convert.reservation_message,
        )

    async def Fulfill(
        self, request: reservations_pb2.FulfillRequest, context: Any
    ) -> common_pb2.Reservation:
        return await self._mutate(
            context, Reservation,
            lambda: commands.Fulfill(
                request.reservation_id, request.request_id,
                convert.line_quantities(request.lines), request.expected_version,
            ),
            convert.reservation_message,
        )

    async def Extend(
        self, request: reservations_pb2.ExtendRequest, context: Any
    ) -> common_pb2.Reservation:
        return await self._mutate(
            context, Reservation,
            lambda: commands.Extend(request.reservation_id, request.request_id,
                                    request.ttl_seconds, request.expected_version),
            convert.reservation_message,
        )

    async def RecordDelivery(
        self, request: reservations_pb2.RecordDeliveryRequest, context: Any
    ) -> common_pb2.Reservation:
        return await self._mutate(
            context, Reservation, lambda: convert.record_delivery(request),
            convert.reservation_message,
        )

    async def GetReservation(
        self, request: reservations_pb2.GetReservationRequest, context: Any
    ) -> common_pb2.Reservation:
        def read() -> common_pb2.Reservation:
            violations = Violations()
            violations.identifier("reservation_id", request.reservation_id)
            violations.raise_if_any()
            return convert.reservation_message(self.ledger.reservation(request.reservation_id))

        return await self._read(context, read, request)

    async def ListReservations(
        self, request: reservations_pb2.ListReservationsRequest, context: Any
    ) -> reservations_pb2.ListReservationsResponse:
        def read() -> reservations_pb2.ListReservationsResponse:
            page, token = self._list_reservations(request)
            return reservations_pb2.ListReservationsResponse(
                reservations=[convert.reservation_message(r) for r in page], next_page_token=token
            )

        return await self._read(context, read, request)

    def _list_reservations(
        self, request: reservations_pb2.ListReservationsRequest
    ) -> tuple[list[Any], str]:
        states = common_pb2.Reservation.State
        if request.state not in states.values():
            raise InvalidArgument.single("state", "unknown state")
        check_list_filters(request)
        size = page_size_of(request)
        wanted = ReservationFilter(
            state=ReservationState(states.Name(request.state)) if request.state else None,
            sku=request.sku, node_id=request.node_id,
            at_risk=request.at_risk if request.HasField("at_risk") else None,
        )
        after = _decode_token("reservations", request.page_token) if request.page_token else ""
        page, resume_after = list_reservations(self.ledger, self.archive, wanted, after, size)
        token = "" if resume_after is None else _encode_token("reservations", resume_after)
        return page, token

    async def Reallocate(
        self, request: reservations_pb2.ReallocateRequest, context: Any
    ) -> reservations_pb2.ReallocateResponse:
        scope = Scope(request.node_id, request.sku, tuple(request.reservation_ids))
        if request.dry_run:
            return await self._read(context, lambda: convert.reallocate_response(
                self.ledger.plan_reallocation(scope, self.writer.clock())))
        return await self._mutate(
            context, ReallocationResult,
            lambda: commands.Reallocate(scope.node_id, scope.sku, scope.reservation_ids,
                                        request.plan_sequence),
            convert.reallocate_response,
        )


class EventsServicer(events_pb2_grpc.EventsServicer):
    def __init__(self, hub: EventHub) -> None:
        self.hub = hub

    async def Watch(
        self, request: events_pb2.WatchRequest, context: Any
    ) -> AsyncIterator[events_pb2.Event]:
        try:
            check_watch_request(request)
        except InvalidArgument as error:
            await abort(context, error)
        event_filter = EventFilter(
            frozenset(request.types), request.sku, request.node_id, request.reservation_id,
            request.principal,
        )
        try:
            async for event in self.hub.watch(
                request.after_sequence, event_filter, request.stop_at_head
            ):
                yield convert.event_message(event)
        except LedgerError as error:  # OutOfRange, WatcherLagging, or the journal unreadable
            await abort(context, error)


def check_watch_request(request: events_pb2.WatchRequest) -> None:
    """A filter naming an unknown event type would silently match nothing: refuse it."""
    violations = Violations()
    for index, event_type in enumerate(request.types):
        if event_type not in EVENT_TYPES:
            violations.add(f"types[{index}]", f"unknown event type {event_type!r}; one of "
                           + ", ".join(sorted(EVENT_TYPES)))
    for name in ("sku", "node_id", "reservation_id"):
        violations.identifier(name, getattr(request, name), required=False)
    violations.raise_if_any()


async def _ready(answer: T) -> T:
    return answer


def reserve_command(request: reservations_pb2.ReserveRequest) -> commands.Reserve | Refused:
    """The request as a command, or the refusal of it (one batch item fails alone)."""
    try:
        return convert.reserve(request)
    except LedgerError as error:
        return Refused(error)


def stamp_commit(
    context: grpc.aio.ServicerContext, answer: object, commit: int, term: int = 0,
    member: str = "",
) -> None:
    """Tells a write's caller the commit its change is durable at (or a later one), which a
    read may name as its min_sequence on any member: in the answer's commit_sequence where
    it has one, and always in the trailing metadata (resource messages have no such field,
    so that a write's answer equals what a read of it returns)."""
    if isinstance(answer, Message) and "commit_sequence" in answer.DESCRIPTOR.fields_by_name:
        answer.commit_sequence = commit  # type: ignore[attr-defined]
    if context is not None:  # None: a servicer driven in-process (tests, bench)
        context.set_trailing_metadata(
            ((COMMIT_SEQUENCE_KEY, str(commit)), (TERM_KEY, str(term)), (MEMBER_KEY, member)))


def presenting(kind: type[R], present: Callable[[R], T]) -> Callable[[Result], T]:
    """`present` for a command whose result is a `kind` (any other is a bug)."""
    def checked(result: Result) -> T:
        if not isinstance(result, kind):
            raise InvariantViolation(f"expected a {kind.__name__}, got {type(result).__name__}")
        return present(result)

    return checked


def reserve_result(reservation_id: str, outcome: Outcome) -> reservations_pb2.ReserveResult:
    result = reservations_pb2.ReserveResult()
    fill_reserve_result(result, reservation_id, outcome)
    return result


def fill_reserve_result(
    result: reservations_pb2.ReserveResult, reservation_id: str, outcome: Outcome
) -> None:
    """Fills a result in place (no copies of the nested reservation: batches hold 1,000)."""
    result.reservation_id = reservation_id
    if isinstance(outcome, Reservation):
        convert.fill_reservation(result.reservation, outcome)
    elif isinstance(outcome, Refused):
        result.status.CopyFrom(status.rich_status(outcome.error))
        result.reason = outcome.reason
    else:
        raise InvariantViolation(f"a Reserve returned a {type(outcome).__name__}")


def check_availability_request(request: availability_pb2.GetAvailabilityRequest) -> None:
    violations = Violations()
    violations.count("skus", len(request.skus), limits.lines_max)
    violations.count("node_ids", len(request.node_ids), limits.lines_max, least=0)
    for index, sku in enumerate(request.skus[: limits.lines_max]):
        violations.identifier(f"skus[{index}]", sku)
    for index, node_id in enumerate(request.node_ids[: limits.lines_max]):
        violations.identifier(f"node_ids[{index}]", node_id)
    violations.raise_if_any()


def paginate(
    listing: str, items: Any, matches: Callable[[Any], bool], request: Any
) -> tuple[list[Any], str]:
    """One page of a SortedDict's values that match the request's filters, after the token's
    key, and the next token (which names the listing, so that any other refuses it)."""
    check_list_filters(request)
    size, page_token = page_size_of(request), request.page_token
    start = items.bisect_right(_decode_token(listing, page_token)) if page_token else 0
    page: list[Any] = []
    last_key = ""
    # Bounded work, as for reservations (listing.py): a short page and a token to go on.
    for examined, key in enumerate(items.islice(start)):
        if len(page) == size or examined == SCAN_BUDGET:
            return page, _encode_token(listing, last_key)
        value = items[key]
        if matches(value):
            page.append(value)
        last_key = key
    return page, ""


def page_size_of(request: Any) -> int:
    page_size = request.page_size
    if page_size < 0 or page_size > limits.page_size_max:
        raise InvalidArgument.single("page_size", f"must be 0..{limits.page_size_max}")
    return int(page_size or limits.page_size_default)


def check_list_filters(request: Any) -> None:
    """The sku and node_id filters a List request may give: ids like any other, when set."""
    violations = Violations()
    for field_name in ("sku", "node_id"):
        violations.identifier(field_name, getattr(request, field_name), required=False)
    violations.raise_if_any()


def _encode_token(listing: str, key: str) -> str:
    return base64.urlsafe_b64encode(f"{listing}:{key}".encode()).decode()


def _decode_token(listing: str, token: str) -> str:
    """The key a token of this listing resumes after; anything else is refused, so that a
    mangled token cannot silently restart the listing or end it early."""
    try:
        text = base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeError):
        text = ""
    name, colon, key = text.partition(":")
    if name != listing or not colon:
        raise InvalidArgument.single(
            "page_token", f"not a token from a previous {listing} page") from None
    return key

