"""atp.client against a fake atpd: conversions, error decoding, retries, streams."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import itertools
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from google.type import date_pb2
from grpc_health.v1 import health_pb2

import atp.client
from atp.client import RPCS, AsyncClient, AtpError, Client, reservation_from_result
from atp.v1 import (
    allocation_pb2,
    availability_pb2,
    common_pb2,
    events_pb2,
    inventory_pb2,
    reservations_pb2,
    server_pb2,
)

from . import FakeAtpd, abort_with, fake_atpd, status_of, unused_target

__all__ = ["fake_atpd"]  # The fixture is used by name.

INSUFFICIENT_MESSAGE = "line l1 (sku A at DC1): requested 5, available 2"


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries wait no time, so that the tests are quick (the schedule is tested apart)."""
    monkeypatch.setattr(atp.client, "backoff_first_s", 0.0)


@pytest.fixture
def client(fake_atpd: FakeAtpd) -> Iterator[Client]:
    with Client(fake_atpd.target, timeout_s=10.0) as connected:
        yield connected


def echo_reservation(request: reservations_pb2.ReserveRequest, context: Any) -> Any:
    return common_pb2.Reservation(
        reservation_id=request.reservation_id,
        state=common_pb2.Reservation.COMMITTED if request.commit else common_pb2.Reservation.HELD,
        lines=request.lines,
    )


def fail_insufficient(request: Any, context: grpc.ServicerContext) -> Any:
    abort_with(
        context,
        grpc.StatusCode.FAILED_PRECONDITION,
        INSUFFICIENT_MESSAGE,
        error_details_pb2.ErrorInfo(
            reason="INSUFFICIENT_AVAILABILITY", domain="atp", metadata={"sku": "A"}
        ),
        error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type="INSUFFICIENT_AVAILABILITY",
                    subject="l1",
                    description="requested 5, available 2",
                )
            ]
        ),
    )


def unavailable_then(answer: Any, failures: int) -> Any:
    """A handler failing with UNAVAILABLE `failures` times, then answering."""
    calls = {"count": 0}

    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        calls["count"] += 1
        if calls["count"] <= failures:
            abort_with(context, grpc.StatusCode.UNAVAILABLE, "storage busy")
        return answer

    return handler


# ---------------------------------------------------------------------------------------------
# Requests: dicts, dates, keyword fields


def test_reserve_converts_dict_lines_dates_and_policy(fake_atpd: FakeAtpd, client: Client) -> None:
    fake_atpd.answer("Reserve", echo_reservation)

    reservation = client.reserve(
        "o1",
        [
            {"line_id": "l1", "sku": "A", "quantity": 2, "node_id": "DC1"},
            common_pb2.ReservationLine(line_id="l2", sku="B", quantity=1),
            {"line_id": "l3", "sku": "C", "quantity": 4, "ship_date": datetime.date(2026, 3, 1)},
        ],
        destination_region="EAST",
        policy={"allow_partial": True, "objective": "CHEAPEST"},
        commit=True,
        priority=5,
        channel="web",
        customer_id="c9",
    )

    (request,) = fake_atpd.requests("Reserve")
    assert [line.line_id for line in request.lines] == ["l1", "l2", "l3"]
    assert request.lines[0].node_id == "DC1"
    assert request.lines[2].ship_date == date_pb2.Date(year=2026, month=3, day=1)
    assert request.policy.allow_partial
    assert request.policy.objective == common_pb2.FulfillmentPolicy.CHEAPEST
    assert (request.destination_region, request.priority, request.channel) == ("EAST", 5, "web")
    assert request.commit and request.customer_id == "c9"
    assert isinstance(reservation, common_pb2.Reservation)
    assert reservation.state == common_pb2.Reservation.COMMITTED


def test_upsert_node_takes_keyword_fields_or_a_message(fake_atpd: FakeAtpd, client: Client) -> None:
    fake_atpd.answer("UpsertNode", lambda request, context: request.node)

    from_fields = client.upsert_node(
        node_id="DC1", kind="DC", active=True, lanes=[{"region": "EAST", "transit_days": 2}]
    )
    from_message = client.upsert_node(common_pb2.Node(node_id="S1", kind="STORE"))

    assert from_fields.lanes[0] == common_pb2.Lane(region="EAST", transit_days=2)
    assert from_fields.active
    assert from_message.node_id == "S1"


def test_upsert_supply_and_place_hold_convert_dates_and_times(
    fake_atpd: FakeAtpd, client: Client
) -> None:
    fake_atpd.answer("UpsertSupply", lambda request, context: request.supply)
    fake_atpd.answer("PlaceHold", lambda request, context: request.hold)
    expire_time = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)

    supply = client.upsert_supply("po1", "A", "DC1", 10, datetime.date(2026, 5, 17))
    hold = client.place_hold("h1", "A", "DC1", 3, reason="qa", expire_time=expire_time)

    assert supply.expected_date == date_pb2.Date(year=2026, month=5, day=17)
    assert hold.expire_time.ToDatetime(tzinfo=datetime.UTC) == expire_time
    assert not hold.force


def test_get_availability_accepts_a_lone_sku(fake_atpd: FakeAtpd, client: Client) -> None:
    fake_atpd.answer("GetAvailability", availability_pb2.GetAvailabilityResponse())

    client.get_availability("SKU-1", node_ids=("DC1",), include_timeline=True)

    (request,) = fake_atpd.requests("GetAvailability")
    assert list(request.skus) == ["SKU-1"]
    assert list(request.node_ids) == ["DC1"]
    assert request.include_timeline


def test_reads_ask_for_stale_consistency_only_when_told(
    fake_atpd: FakeAtpd, client: Client,
) -> None:
    fake_atpd.answer("GetAvailability", availability_pb2.GetAvailabilityResponse())
    fake_atpd.answer("GetAvailability", availability_pb2.GetAvailabilityResponse())
    client.get_availability("SKU-1")
    client.get_availability("SKU-1", stale=True)
    default, stale = fake_atpd.requests("GetAvailability")
    assert default.consistency == common_pb2.READ_CONSISTENCY_UNSPECIFIED
    assert stale.consistency == common_pb2.READ_CONSISTENCY_STALE


def test_list_reservations_maps_state_names_and_optional_at_risk(
    fake_atpd: FakeAtpd, client: Client
) -> None:
    fake_atpd.answer("ListReservations", reservations_pb2.ListReservationsResponse())

    client.list_reservations(state="held", sku="A")
    client.list_reservations(at_risk=False)

    first, second = fake_atpd.requests("ListReservations")
    assert first.state == common_pb2.Reservation.HELD
    assert not first.HasField("at_risk")
    assert second.HasField("at_risk") and second.at_risk is False


def test_unknown_dict_field_is_a_value_error(client: Client) -> None:
    with pytest.raises(ValueError):
        client.reserve("o1", [{"line_id": "l1", "sku": "A", "qty": 2}])


def test_release_and_fulfill_take_line_quantities_as_dicts(
    fake_atpd: FakeAtpd, client: Client
) -> None:
    fake_atpd.answer("Release", common_pb2.Reservation(reservation_id="o1"))
    fake_atpd.answer("Fulfill", common_pb2.Reservation(reservation_id="o1"))

    client.release("o1", lines=[{"line_id": "l1", "quantity": 2}], request_id="r-1")
    client.fulfill("o1")

    (release,) = fake_atpd.requests("Release")
    (fulfill,) = fake_atpd.requests("Fulfill")
    assert release.lines[0] == common_pb2.LineQuantity(line_id="l1", quantity=2)
    assert release.request_id == "r-1"
    assert not fulfill.lines and len(fulfill.request_id) == 32


# ---------------------------------------------------------------------------------------------
# Errors


def test_insufficient_availability_is_decoded(fake_atpd: FakeAtpd, client: Client) -> None:
    fake_atpd.answer("Reserve", fail_insufficient)

    with pytest.raises(AtpError) as raised:
        client.reserve("o1", [{"line_id": "l1", "sku": "A", "quantity": 5, "node_id": "DC1"}])

    error = raised.value
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "INSUFFICIENT_AVAILABILITY"
    assert error.metadata == {"sku": "A"}
    assert error.message == INSUFFICIENT_MESSAGE
    assert [violation.subject for violation in error.precondition_violations] == ["l1"]
    assert str(error) == f"FAILED_PRECONDITION INSUFFICIENT_AVAILABILITY: {INSUFFICIENT_MESSAGE}"


def test_bad_request_field_violations_are_decoded(fake_atpd: FakeAtpd, client: Client) -> None:
    def reject(request: Any, context: grpc.ServicerContext) -> Any:
        abort_with(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            "",
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field="movements[0].quantity", description="must be 1..10^12"
                    ),
                    error_details_pb2.BadRequest.FieldViolation(
                        field="request_id", description="must not be empty"
                    ),
                ]
            ),
        )

    fake_atpd.answer("AdjustStock", reject)

    with pytest.raises(AtpError) as raised:
        client.adjust_stock([{"sku": "A", "node_id": "DC1", "type": "RECEIPT", "quantity": 0}])

    error = raised.value
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == ""
    assert [violation.field for violation in error.field_violations] == [
        "movements[0].quantity",
        "request_id",
    ]
    assert str(error) == (
        "INVALID_ARGUMENT: movements[0].quantity: must be 1..10^12; request_id: must not be empty"
    )
    assert len(fake_atpd.requests("AdjustStock")) == 1


def test_not_found_carries_resource_info(fake_atpd: FakeAtpd, client: Client) -> None:
    def not_found(request: Any, context: grpc.ServicerContext) -> Any:
        abort_with(
            context,
            grpc.StatusCode.NOT_FOUND,
            "reservation o404 not found",
            error_details_pb2.ErrorInfo(reason="RESERVATION_NOT_FOUND"),
            error_details_pb2.ResourceInfo(resource_type="reservation", resource_name="o404"),
        )

    fake_atpd.answer("GetReservation", not_found)

    with pytest.raises(AtpError) as raised:
        client.get_reservation("o404")

    assert raised.value.resource_info is not None
    assert raised.value.resource_info.resource_name == "o404"
    assert [type(detail) for detail in raised.value.details] == [
        error_details_pb2.ErrorInfo,
        error_details_pb2.ResourceInfo,
    ]
    assert str(raised.value) == "NOT_FOUND RESERVATION_NOT_FOUND: reservation o404 not found"


def test_plain_status_without_details(fake_atpd: FakeAtpd, client: Client) -> None:
    def conflict(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.ALREADY_EXISTS, "o1 exists with another request")

    fake_atpd.answer("Reserve", conflict)

    with pytest.raises(AtpError) as raised:
        client.reserve("o1", [{"line_id": "l1", "sku": "A", "quantity": 1}])

    assert raised.value.code is grpc.StatusCode.ALREADY_EXISTS
    assert raised.value.details == [] and raised.value.metadata == {}
    assert str(raised.value) == "ALREADY_EXISTS: o1 exists with another request"


def test_unreachable_server_is_unavailable() -> None:
    with (
        Client(unused_target(), timeout_s=5.0, retries=1) as unreachable,
        pytest.raises(AtpError) as raised,
    ):
        unreachable.list_nodes()

    assert raised.value.code is grpc.StatusCode.UNAVAILABLE
    assert raised.value.details == []


# ---------------------------------------------------------------------------------------------
# Retries


def test_unavailable_keyed_call_is_retried_with_the_same_request_id(
    fake_atpd: FakeAtpd, client: Client
) -> None:
    answer = inventory_pb2.AdjustStockResponse(positions=[common_pb2.Position(sku="A")])
    fake_atpd.answer("AdjustStock", unavailable_then(answer, failures=2))

    response = client.adjust_stock(
        [{"sku": "A", "node_id": "DC1", "type": "RECEIPT", "quantity": 5}]
    )

    attempts = fake_atpd.requests("AdjustStock")
    assert response == answer
    assert len(attempts) == 3
    assert len({attempt.request_id for attempt in attempts}) == 1
    assert len(attempts[0].request_id) == 32  # uuid4 hex


def test_retries_bound_the_attempts(fake_atpd: FakeAtpd) -> None:
    fake_atpd.answer("Commit", unavailable_then(common_pb2.Reservation(), failures=100))

    with Client(fake_atpd.target, retries=2) as client, pytest.raises(AtpError) as raised:
        client.commit("o1", request_id="commit-o1")

    assert raised.value.code is grpc.StatusCode.UNAVAILABLE
    assert [attempt.request_id for attempt in fake_atpd.requests("Commit")] == ["commit-o1"] * 3


def test_zero_retries_makes_one_attempt(fake_atpd: FakeAtpd) -> None:
    fake_atpd.answer("ListNodes", unavailable_then(inventory_pb2.ListNodesResponse(), failures=1))

    with Client(fake_atpd.target, retries=0) as client, pytest.raises(AtpError):
        client.list_nodes()

    assert len(fake_atpd.requests("ListNodes")) == 1


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNKNOWN,
    ],
)
def test_codes_other_than_unavailable_are_never_retried(
    fake_atpd: FakeAtpd, client: Client, code: grpc.StatusCode
) -> None:
    fake_atpd.answer("Reserve", lambda request, context: abort_with(context, code, "no"))

    with pytest.raises(AtpError) as raised:
        client.reserve("o1", [{"line_id": "l1", "sku": "A", "quantity": 1}])

    assert raised.value.code is code
    assert len(fake_atpd.requests("Reserve")) == 1


def test_reallocation_is_retried_as_a_dry_run_or_a_guarded_plan_only(
    fake_atpd: FakeAtpd, client: Client
) -> None:
    plan = reservations_pb2.ReallocateResponse(plan_sequence=7)
    fake_atpd.answer("Reallocate", unavailable_then(plan, failures=1))
    assert client.reallocate(sku="A", dry_run=True) == plan
    assert len(fake_atpd.requests("Reallocate")) == 2

    # An apply guarded by its plan_sequence cannot apply twice (a repeat is PLAN_STALE).
    fake_atpd.answer("Reallocate", unavailable_then(plan, failures=1))
    assert client.reallocate(sku="A", plan_sequence=7) == plan
    assert len(fake_atpd.requests("Reallocate")) == 4

    # An unguarded apply could: one attempt only.
    fake_atpd.answer("Reallocate", unavailable_then(plan, failures=1))
    with pytest.raises(AtpError):
        client.reallocate(sku="A")
    assert len(fake_atpd.requests("Reallocate")) == 5


def test_every_mutation_is_keyed_or_naturally_idempotent() -> None:
    keyed = {name for name, rpc in RPCS.items() if rpc.retry is atp.client.Retry.IDEMPOTENCY_KEY}
    assert keyed == {
        "AdjustStock",
        "ReceiveSupply",
        "PlaceHold",
        "Reserve",
        "ReserveBatch",
        "Commit",
        "Release",
        "Fulfill",
        "Extend",
        "RecordDelivery",
    }
    natural = {
        name for name, rpc in RPCS.items() if rpc.retry is atp.client.Retry.NATURALLY_IDEMPOTENT
    }
    assert natural == {"UpsertNode", "SetSafetyStock", "UpsertSupply", "ReleaseHold",
                       "SetAllocationPolicy", "SetChannelAllocation"}


def test_backoff_grows_exponentially_with_jitter_and_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atp.client, "backoff_first_s", 0.05)
    for attempt, full_s in ((1, 0.05), (2, 0.1), (3, 0.2), (10, atp.client.backoff_max_s)):
        assert full_s / 2 <= atp.client._backoff_s(attempt) <= full_s


# ---------------------------------------------------------------------------------------------
# Helpers and the shape of the API


def test_iter_reservations_follows_page_tokens(fake_atpd: FakeAtpd, client: Client) -> None:
    pages = {
        "": reservations_pb2.ListReservationsResponse(
            reservations=[common_pb2.Reservation(reservation_id="o1")], next_page_token="p2"
        ),
        "p2": reservations_pb2.ListReservationsResponse(
            reservations=[common_pb2.Reservation(reservation_id="o2")]
        ),
    }
    fake_atpd.answer("ListReservations", lambda request, context: pages[request.page_token])

    identifiers = [item.reservation_id for item in client.iter_reservations(sku="A")]

    assert identifiers == ["o1", "o2"]
    assert [request.sku for request in fake_atpd.requests("ListReservations")] == ["A", "A"]


def test_health_returns_the_status_name(fake_atpd: FakeAtpd, client: Client) -> None:
    fake_atpd.answer(
        "Check", health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
    )
    assert client.health() == "SERVING"


def test_reserve_batch_results_give_reservations_or_errors(
    fake_atpd: FakeAtpd, client: Client
) -> None:
    failure = status_of(
        grpc.StatusCode.FAILED_PRECONDITION,
        INSUFFICIENT_MESSAGE,
        error_details_pb2.ErrorInfo(reason="INSUFFICIENT_AVAILABILITY"),
    )
    fake_atpd.answer(
        "ReserveBatch",
        reservations_pb2.ReserveBatchResponse(
            results=[
                reservations_pb2.ReserveResult(
                    reservation_id="o1", reservation=common_pb2.Reservation(reservation_id="o1")
                ),
                reservations_pb2.ReserveResult(reservation_id="o2", status=failure),
            ]
        ),
    )

    response = client.reserve_batch(
        [
            atp.client.reserve_request("o1", [{"line_id": "l1", "sku": "A", "quantity": 1}]),
            {"reservation_id": "o2", "lines": [{"line_id": "l1", "sku": "A", "quantity": 9}]},
        ]
    )

    (request,) = fake_atpd.requests("ReserveBatch")
    assert [item.reservation_id for item in request.requests] == ["o1", "o2"]
    assert reservation_from_result(response.results[0]).reservation_id == "o1"
    with pytest.raises(AtpError) as raised:
        reservation_from_result(response.results[1])
    assert raised.value.reason == "INSUFFICIENT_AVAILABILITY"


def two_events_then_failure(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
    for sequence in (request.after_sequence + 1, request.after_sequence + 2):
        yield events_pb2.Event(sequence=sequence, type="STOCK_MOVED", sku=request.sku)
    abort_with(context, grpc.StatusCode.UNAVAILABLE, "shutting down")


def test_watch_streams_events_then_raises_the_stream_error(
    fake_atpd: FakeAtpd, client: Client
) -> None:
    fake_atpd.answer("Watch", two_events_then_failure)
    received: list[int] = []

    with pytest.raises(AtpError) as raised:
        for event in client.watch(after_sequence=10, sku="A"):
            received.append(event.sequence)

    assert received == [11, 12]
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE
    assert len(fake_atpd.requests("Watch")) == 1  # A stream is never retried.


def test_a_passed_channel_is_left_open(fake_atpd: FakeAtpd) -> None:
    fake_atpd.answer("ListNodes", inventory_pb2.ListNodesResponse())
    with grpc.insecure_channel(fake_atpd.target) as channel:
        with Client(channel=channel) as first:
            first.list_nodes()
        with Client(channel=channel) as second:
            second.list_nodes()
    assert len(fake_atpd.requests("ListNodes")) == 2


def test_the_rpc_table_covers_every_unary_rpc_of_the_protos() -> None:
    streaming = {"ReserveStream", "Watch"}
    proto_methods = {
        method.name
        for module in (inventory_pb2, availability_pb2, reservations_pb2, events_pb2, server_pb2,
                       allocation_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert proto_methods - streaming == set(RPCS) - {"Health.Check"}


def test_both_clients_offer_the_same_methods_with_the_same_parameters() -> None:
    def public_methods(client_type: type) -> dict[str, list[inspect.Parameter]]:
        return {
            name: list(inspect.signature(member).parameters.values())
            for name, member in inspect.getmembers(client_type, callable)
            if not name.startswith("_") and name != "reserve_stream"
        }

    sync_methods = public_methods(Client)
    assert sync_methods == public_methods(AsyncClient)
    for rpc in RPCS.values():
        if rpc is not atp.client.HEALTH_CHECK:
            assert atp.client._snake_case(rpc.method) in sync_methods


# ---------------------------------------------------------------------------------------------
# The asyncio client


def test_async_client_calls_decodes_errors_and_retries(fake_atpd: FakeAtpd) -> None:
    fake_atpd.answer("Reserve", echo_reservation)
    fake_atpd.answer("Promise", fail_insufficient)
    fake_atpd.answer("Fulfill", unavailable_then(common_pb2.Reservation(reservation_id="o1"), 2))

    async def scenario() -> tuple[Any, AtpError, Any]:
        async with AsyncClient(fake_atpd.target) as client:
            reservation = await client.reserve(
                "o1", [{"line_id": "l1", "sku": "A", "quantity": 1, "ship_date": "2026-03-01"}]
            )
            with pytest.raises(AtpError) as raised:
                await client.promise([{"line_id": "l1", "sku": "A", "quantity": 5}], "EAST")
            fulfilled = await client.fulfill("o1")
            return reservation, raised.value, fulfilled

    reservation, error, fulfilled = asyncio.run(scenario())

    assert reservation.lines[0].ship_date == date_pb2.Date(year=2026, month=3, day=1)
    assert error.reason == "INSUFFICIENT_AVAILABILITY"
    assert [violation.subject for violation in error.precondition_violations] == ["l1"]
    assert str(error) == f"FAILED_PRECONDITION INSUFFICIENT_AVAILABILITY: {INSUFFICIENT_MESSAGE}"
    assert fulfilled.reservation_id == "o1"
    attempts = fake_atpd.requests("Fulfill")
    assert len(attempts) == 3 and len({attempt.request_id for attempt in attempts}) == 1


def test_async_iter_reservations_follows_page_tokens(fake_atpd: FakeAtpd) -> None:
    pages = {
        "": reservations_pb2.ListReservationsResponse(
            reservations=[common_pb2.Reservation(reservation_id="o1")], next_page_token="p2"
        ),
        "p2": reservations_pb2.ListReservationsResponse(
            reservations=[common_pb2.Reservation(reservation_id="o2")]
        ),
    }
    fake_atpd.answer("ListReservations", lambda request, context: pages[request.page_token])

    async def scenario() -> list[str]:
        async with AsyncClient(fake_atpd.target) as client:
            return [item.reservation_id async for item in client.iter_reservations()]

    assert asyncio.run(scenario()) == ["o1", "o2"]


def test_async_watch_streams_events_then_raises_the_stream_error(fake_atpd: FakeAtpd) -> None:
    fake_atpd.answer("Watch", two_events_then_failure)

    async def scenario() -> tuple[list[int], AtpError]:
        received: list[int] = []
        async with AsyncClient(fake_atpd.target) as client:
            with pytest.raises(AtpError) as raised:
                async for event in client.watch(after_sequence=1):
                    received.append(event.sequence)
        return received, raised.value

    received, error = asyncio.run(scenario())

    assert received == [2, 3]
    assert error.code is grpc.StatusCode.UNAVAILABLE and error.message == "shutting down"


def answer_after_three(request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
    """Reads three requests before answering any, so a client must have them all in flight."""
    gathered = [next(request_iterator) for _ in range(3)]
    for request in itertools.chain(gathered, request_iterator):
        if request.reservation_id.startswith("short"):
            failure = status_of(
                grpc.StatusCode.FAILED_PRECONDITION,
                INSUFFICIENT_MESSAGE,
                error_details_pb2.ErrorInfo(reason="INSUFFICIENT_AVAILABILITY"),
            )
            yield reservations_pb2.ReserveResult(
                reservation_id=request.reservation_id,
                status=failure,
                reason="INSUFFICIENT_AVAILABILITY",
            )
        else:
            reservation = common_pb2.Reservation(reservation_id=request.reservation_id)
            yield reservations_pb2.ReserveResult(
                reservation_id=request.reservation_id, reservation=reservation
            )


def test_reserve_stream_matches_answers_to_submits_in_order(fake_atpd: FakeAtpd) -> None:
    fake_atpd.answer("ReserveStream", answer_after_three)
    line = {"line_id": "l1", "sku": "A", "quantity": 1}

    async def scenario() -> list[Any]:
        async with AsyncClient(fake_atpd.target) as client, client.reserve_stream() as stream:
            in_flight = [
                stream.submit(atp.client.reserve_request(identifier, [line]))
                for identifier in ("o1", "short-o2", "o3")
            ]
            results = await asyncio.gather(*in_flight, return_exceptions=True)
            later = await stream.submit({"reservation_id": "o4", "lines": [line]})
            return [*results, later]

    first, second, third, fourth = asyncio.run(scenario())

    assert first.reservation_id == "o1"
    assert isinstance(second, AtpError)
    assert second.code is grpc.StatusCode.FAILED_PRECONDITION
    assert second.reason == "INSUFFICIENT_AVAILABILITY"
    assert third.reservation_id == "o3"
    assert fourth.reservation_id == "o4"


def test_reserve_stream_failure_fails_every_pending_submit(fake_atpd: FakeAtpd) -> None:
    def overloaded(request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        next(request_iterator)
        next(request_iterator)
        abort_with(
            context,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "too many pending mutations",
            error_details_pb2.ErrorInfo(reason="OVERLOADED"),
        )

    fake_atpd.answer("ReserveStream", overloaded)
    line = {"line_id": "l1", "sku": "A", "quantity": 1}

    async def scenario() -> tuple[list[Any], Any]:
        async with AsyncClient(fake_atpd.target) as client, client.reserve_stream() as stream:
            submits = [
                stream.submit(atp.client.reserve_request(identifier, [line]))
                for identifier in ("o1", "o2")
            ]
            results = await asyncio.gather(*submits, return_exceptions=True)
            try:
                await stream.submit(atp.client.reserve_request("o3", [line]))
            except AtpError as error:
                return results, error
            return results, None

    results, after_end = asyncio.run(scenario())

    for result in [*results, after_end]:
        assert isinstance(result, AtpError)
        assert result.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert result.reason == "OVERLOADED"
