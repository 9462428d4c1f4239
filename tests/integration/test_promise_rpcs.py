"""Availability.Promise and auto-sourced Reserve over a real atpd (docs/contract.md).

Each test uses its own destination region and SKUs, so the nodes other tests of the shared
module server create never take part (they have no lane to the region and no such SKU).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from atp.v1 import availability_pb2, common_pb2, inventory_pb2, reservations_pb2
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    Code,
    Movement,
    adjust,
    day,
    expect_error,
    get_position,
    movement,
    pb_date,
    py_date,
    reserve_request,
    snapshot,
    uid,
    upsert_node,
)

pytestmark = pytest.mark.integration

Objective = common_pb2.FulfillmentPolicy.Objective


@dataclass
class Network:
    region: str
    x: str  # SKU split over A and B
    y: str  # SKU only inbound at B
    a: str
    b: str
    inactive: str
    laneless: str


def _supply(api: Api, sku: str, node_id: str, quantity: int, offset: int) -> None:
    api.inventory.UpsertSupply(
        inventory_pb2.UpsertSupplyRequest(
            supply=common_pb2.Supply(
                supply_id=uid("po"),
                sku=sku,
                node_id=node_id,
                quantity=quantity,
                expected_date=pb_date(day(offset)),
            )
        ),
        timeout=CALL_TIMEOUT,
    )


def _network(api: Api) -> Network:
    """A: 5 X (1 day, cost 5). B: 5 X and 4 Y inbound on day 3 (2 days, cost 3).
    An inactive node and a node without a lane to the region hold plenty of X."""
    region = uid("region")
    x, y = uid("skuX"), uid("skuY")
    a = upsert_node(api, uid("A"), lanes=[(region, 1, 5)])
    b = upsert_node(api, uid("B"), lanes=[(region, 2, 3)])
    inactive = upsert_node(api, uid("C"), lanes=[(region, 0, 0)], active=False)
    laneless = upsert_node(api, uid("D"), lanes=[(uid("elsewhere"), 0, 0)])
    adjust(
        api,
        movement(x, a, Movement.RECEIPT, 5),
        movement(x, b, Movement.RECEIPT, 5),
        movement(x, inactive, Movement.RECEIPT, 50),
        movement(x, laneless, Movement.RECEIPT, 50),
    )
    _supply(api, y, b, 4, 3)
    return Network(region, x, y, a, b, inactive, laneless)


def _promise(
    api: Api, lines: list[tuple[str, str, int]], region: str, **options: object
) -> availability_pb2.PromiseResponse:
    policy = options.pop("policy", None)
    return api.availability.Promise(
        availability_pb2.PromiseRequest(
            lines=[availability_pb2.OrderLine(line_id=l, sku=s, quantity=q) for l, s, q in lines],
            destination_region=region,
            policy=policy,
            **options,
        ),
        timeout=CALL_TIMEOUT,
    )


def _allocations(response: availability_pb2.PromiseResponse) -> list[tuple[object, ...]]:
    return [
        (
            lp.line_id,
            a.node_id,
            a.quantity,
            py_date(a.ship_date),
            py_date(a.delivery_date),
            a.from_inbound,
        )
        for lp in response.lines
        for a in lp.allocations
    ]


def _iso(offset: int) -> str:
    return day(offset).isoformat()


# ----- Promise --------------------------------------------------------------------------------


def test_promise_splits_a_line_and_explains_every_node(api: Api) -> None:
    net = _network(api)
    before = snapshot(api, [net.x, net.y])
    response = _promise(api, [("l1", net.x, 8), ("l2", net.y, 4)], net.region, explain=True)
    assert _allocations(response) == [
        ("l1", net.a, 5, day(0), day(1), False),
        ("l1", net.b, 3, day(0), day(2), False),
        ("l2", net.b, 4, day(3), day(5), True),
    ]
    assert [lp.backordered_quantity for lp in response.lines] == [0, 0]
    assert not any(lp.HasField("backorder_date") for lp in response.lines)
    assert py_date(response.promise_date) == day(5)
    assert response.complete

    outcomes = {c.node_id: (c.outcome, c.detail) for c in response.lines[0].candidates}
    assert outcomes[net.a] == ("CHOSEN", f"chosen: 5 units ship {_iso(0)}, deliver {_iso(1)}")
    assert outcomes[net.b] == ("CHOSEN", f"chosen: 3 units ship {_iso(0)}, deliver {_iso(2)}")
    assert outcomes[net.inactive] == ("INACTIVE", "inactive")
    assert outcomes[net.laneless] == ("NO_LANE", f"no lane to {net.region}")
    outcomes = {c.node_id: (c.outcome, c.detail) for c in response.lines[1].candidates}
    assert outcomes[net.b] == ("CHOSEN", f"chosen: 4 units ship {_iso(3)}, deliver {_iso(5)}")
    assert outcomes[net.a] == ("NO_STOCK_OR_SUPPLY", f"no stock or supply of {net.y}")
    # Every node of the server is explained, in node id order.
    ids = [c.node_id for c in response.lines[0].candidates]
    assert ids == sorted(ids) and {net.a, net.b, net.inactive, net.laneless} <= set(ids)

    # Without explain there are no candidates; the plan is the same. Promise changed nothing.
    plain = _promise(api, [("l1", net.x, 8), ("l2", net.y, 4)], net.region)
    assert _allocations(plain) == _allocations(response)
    assert all(not lp.candidates for lp in plain.lines)
    assert snapshot(api, [net.x, net.y]) == before


def test_promise_policies_over_the_wire(api: Api) -> None:
    net = _network(api)
    lines = [("l1", net.x, 4)]
    # EARLIEST: A (1 day); CHEAPEST: B (cost 3 < 5).
    assert _allocations(_promise(api, lines, net.region)) == [
        ("l1", net.a, 4, day(0), day(1), False)
    ]
    cheapest = common_pb2.FulfillmentPolicy(objective=Objective.CHEAPEST)
    assert _allocations(_promise(api, lines, net.region, policy=cheapest)) == [
        ("l1", net.b, 4, day(0), day(2), False)
    ]
    # ship_complete: one node for X and Y, so B for both, delivered together on day 5.
    whole = common_pb2.FulfillmentPolicy(ship_complete=True)
    response = _promise(api, [("l1", net.x, 4), ("l2", net.y, 4)], net.region, policy=whole)
    assert _allocations(response) == [
        ("l1", net.b, 4, day(3), day(5), False),
        ("l2", net.b, 4, day(3), day(5), True),
    ]
    assert py_date(response.promise_date) == day(5)
    # Not fully promisable without allow_partial: nothing allocated, everything backordered.
    response = _promise(api, [("l1", net.x, 11)], net.region)
    assert not response.complete and _allocations(response) == []
    assert response.lines[0].backordered_quantity == 11
    assert not response.HasField("promise_date")
    # max_nodes=1 with allow_partial: the best single node (A, sooner); the rest backordered.
    single = common_pb2.FulfillmentPolicy(max_nodes=1, allow_partial=True)
    response = _promise(api, [("l1", net.x, 8)], net.region, policy=single)
    assert _allocations(response) == [("l1", net.a, 5, day(0), day(1), False)]
    assert response.lines[0].backordered_quantity == 3
    assert py_date(response.promise_date) == day(1)
    assert not response.complete
    # allow_partial with nothing anywhere: no allocation, no promise date, no backorder date.
    response = _promise(
        api,
        [("l1", net.x, 200)],
        net.region,
        policy=common_pb2.FulfillmentPolicy(max_nodes=1, allow_partial=True),
    )
    assert response.lines[0].backordered_quantity == 200 - 5
    assert not response.lines[0].HasField("backorder_date")


def test_promise_backorder_date_from_inbound_supply(api: Api) -> None:
    region = uid("region")
    x, y = uid("skuX"), uid("skuY")
    a = upsert_node(api, uid("A"), lanes=[(region, 1, 5)])
    b = upsert_node(api, uid("B"), handling_days=1, lanes=[(region, 2, 5)])
    adjust(api, movement(x, a, Movement.RECEIPT, 10), movement(y, a, Movement.RECEIPT, 2))
    _supply(api, y, b, 5, 7)
    policy = common_pb2.FulfillmentPolicy(max_nodes=1, allow_partial=True)
    response = _promise(api, [("l1", x, 10), ("l2", y, 5)], region, policy=policy)
    assert _allocations(response) == [
        ("l1", a, 10, day(0), day(1), False),
        ("l2", a, 2, day(0), day(1), False),
    ]
    assert [lp.backordered_quantity for lp in response.lines] == [0, 3]
    assert py_date(response.lines[1].backorder_date) == day(9)
    assert py_date(response.promise_date) == day(1)
    assert not response.complete


def test_safety_stock_over_the_wire(api: Api) -> None:
    region = uid("region")
    sku = uid("sku")
    node = upsert_node(api, uid("A"), lanes=[(region, 1, 1)])
    adjust(api, movement(sku, node, Movement.RECEIPT, 10))
    api.inventory.SetSafetyStock(
        inventory_pb2.SetSafetyStockRequest(sku=sku, node_id=node, quantity=4), timeout=CALL_TIMEOUT
    )
    assert not _promise(api, [("l1", sku, 8)], region).complete
    assert _promise(api, [("l1", sku, 8)], region, priority=100).complete


# ----- auto-sourced Reserve -------------------------------------------------------------------


def _reserve_sourced(
    api: Api,
    lines: list[tuple[str, str, int]],
    region: str,
    policy: common_pb2.FulfillmentPolicy | None = None,
) -> common_pb2.Reservation:
    request = reserve_request(
        None,
        [common_pb2.ReservationLine(line_id=l, sku=s, quantity=q) for l, s, q in lines],
        destination_region=region,
        policy=policy,
    )
    return api.reservations.Reserve(request, timeout=CALL_TIMEOUT)


def _expected_lines(response: availability_pb2.PromiseResponse) -> list[tuple[object, ...]]:
    rows = []
    for lp in response.lines:
        for part, a in enumerate(lp.allocations, start=1):
            rows.append(
                (
                    lp.line_id if part == 1 else f"{lp.line_id}/{part}",
                    a.node_id,
                    a.quantity,
                    py_date(a.ship_date),
                    py_date(a.delivery_date),
                    a.from_inbound,
                    lp.backordered_quantity if part == 1 else 0,
                )
            )
    return rows


def _held_lines(reservation: common_pb2.Reservation) -> list[tuple[object, ...]]:
    return [
        (
            line.line_id,
            line.node_id,
            line.quantity,
            py_date(line.ship_date),
            py_date(line.delivery_date),
            line.from_inbound,
            line.backordered_quantity,
        )
        for line in reservation.lines
    ]


@pytest.mark.parametrize(
    "policy",
    [
        common_pb2.FulfillmentPolicy(),
        common_pb2.FulfillmentPolicy(ship_complete=True),
        common_pb2.FulfillmentPolicy(objective=Objective.CHEAPEST),
        common_pb2.FulfillmentPolicy(max_nodes=1, allow_partial=True),
    ],
    ids=["earliest", "ship_complete", "cheapest", "single-node-partial"],
)
def test_auto_sourced_reserve_holds_the_preceding_promise(
    api: Api, policy: common_pb2.FulfillmentPolicy
) -> None:
    net = _network(api)
    lines = [("l1", net.x, 8), ("l2", net.y, 4)]
    if policy.ship_complete:
        lines = [("l1", net.x, 4), ("l2", net.y, 4)]
    quote = _promise(api, lines, net.region, policy=policy)
    assert _allocations(quote)
    reservation = _reserve_sourced(api, lines, net.region, policy)
    assert _held_lines(reservation) == _expected_lines(quote)
    assert reservation.promise_date == quote.promise_date
    assert reservation.state == common_pb2.Reservation.State.HELD
    held: dict[tuple[str, str], int] = {}
    for lp, (_, sku, _) in zip(quote.lines, lines):
        for a in lp.allocations:
            held[(sku, a.node_id)] = held.get((sku, a.node_id), 0) + a.quantity
    for (sku, node_id), quantity in held.items():
        assert get_position(api, sku, node_id).reserved == quantity


def test_auto_sourced_split_reserve_names_the_parts(api: Api) -> None:
    net = _network(api)
    reservation = _reserve_sourced(api, [("l1", net.x, 8)], net.region)
    assert [(line.line_id, line.node_id, line.quantity) for line in reservation.lines] == [
        ("l1", net.a, 5),
        ("l1/2", net.b, 3),
    ]
    assert [line.request_line_id for line in reservation.lines] == ["l1", "l1"]
    # Release names one part: the request's line id is the first part, not the whole line.
    failure = expect_error(
        api.reservations.Release,
        reservations_pb2.ReleaseRequest(
            reservation_id=reservation.reservation_id, request_id=uid("rel"),
            lines=[common_pb2.LineQuantity(line_id="l1", quantity=8)]),
        Code.FAILED_PRECONDITION, "QUANTITY_EXCEEDS_OPEN")
    assert failure.error_info is not None and failure.error_info.metadata["parts"] == "l1,l1/2"
    assert "'l1/2' (3 open at" in failure.message
    # The units are taken: the same order can no longer be promised.
    again = _promise(api, [("l1", net.x, 8)], net.region)
    assert not again.complete and _allocations(again) == []
    assert get_position(api, net.x, net.a).available == 0
    assert get_position(api, net.x, net.b).available == 2


def test_auto_sourced_reserve_of_an_unfillable_order_changes_nothing(api: Api) -> None:
    net = _network(api)
    before = snapshot(api, [net.x, net.y])
    request = reserve_request(
        None,
        [
            common_pb2.ReservationLine(line_id="l1", sku=net.x, quantity=3, node_id=net.a),
            common_pb2.ReservationLine(line_id="l2", sku=net.x, quantity=11),
        ],
        destination_region=net.region,
    )
    expect_error(
        api.reservations.Reserve, request, Code.FAILED_PRECONDITION, "INSUFFICIENT_AVAILABILITY"
    )
    assert snapshot(api, [net.x, net.y]) == before


# ----- Promise errors -------------------------------------------------------------------------


def _request(
    lines: list[tuple[str, str, int]], region: str = "EU", **options: object
) -> availability_pb2.PromiseRequest:
    return availability_pb2.PromiseRequest(
        lines=[availability_pb2.OrderLine(line_id=l, sku=s, quantity=q) for l, s, q in lines],
        destination_region=region,
        **options,
    )


def test_promise_rejects_malformed_requests(api: Api) -> None:
    net = _network(api)
    x = net.x
    promise = api.availability.Promise
    expect_error(
        promise,
        _request([("l1", x, 1)], region=""),
        Code.INVALID_ARGUMENT,
        fields=["destination_region"],
    )
    expect_error(
        promise, _request([("l1", x, 0)]), Code.INVALID_ARGUMENT, fields=["lines[0].quantity"]
    )
    expect_error(
        promise, _request([("l1", x, -3)]), Code.INVALID_ARGUMENT, fields=["lines[0].quantity"]
    )
    expect_error(
        promise,
        _request([("l1", x, 10**12 + 1)]),
        Code.INVALID_ARGUMENT,
        fields=["lines[0].quantity"],
    )
    expect_error(
        promise,
        _request([("l1", x, 1), ("l1", x, 2)]),
        Code.INVALID_ARGUMENT,
        fields=["lines[1].line_id"],
    )
    expect_error(
        promise, _request([("", x, 1)]), Code.INVALID_ARGUMENT, fields=["lines[0].line_id"]
    )
    expect_error(promise, _request([]), Code.INVALID_ARGUMENT, fields=["lines"])
    expect_error(
        promise,
        _request([("l1", x, 1)], policy=common_pb2.FulfillmentPolicy(max_nodes=-1)),
        Code.INVALID_ARGUMENT,
        fields=["policy.max_nodes"],
    )
    expect_error(
        promise,
        _request([("l1", x, 1)], policy=common_pb2.FulfillmentPolicy(objective=7)),
        Code.INVALID_ARGUMENT,
        fields=["policy.objective"],
    )
    # Several problems at once are all named.
    failure = expect_error(
        promise, _request([("l1", x, 0), ("l1", x, 1)], region=""), Code.INVALID_ARGUMENT
    )
    assert {"destination_region", "lines[0].quantity", "lines[1].line_id"} <= set(failure.fields)


def test_promise_of_an_unknown_sku_is_not_found(api: Api) -> None:
    net = _network(api)
    missing = uid("never-seen")
    expect_error(
        api.availability.Promise,
        _request([("l1", net.x, 1), ("l2", missing, 1)], region=net.region),
        Code.NOT_FOUND,
        resource_type="sku",
        resource_name=missing,
    )
