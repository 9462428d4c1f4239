"""The error table (README, API; docs/contract.md, Errors) row by row, and hostile input
refused with nothing changed.

Every refusal must carry google.rpc.Status details with ErrorInfo (domain atp.v1, a reason)
plus the detail type of its row; a refused call must change nothing (the positions,
reservations, holds and supply are read before and after); the server stays healthy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atp.v1 import availability_pb2, common_pb2, inventory_pb2, reservations_pb2
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    Code,
    Movement,
    State,
    adjust,
    assert_position,
    check_failure,
    commit,
    create_supply,
    day,
    expect_error,
    failure_of,
    fulfill,
    get_reservation,
    line,
    list_all,
    movement,
    pb_date,
    release,
    reserve,
    reserve_request,
    snapshot,
    stocked,
    uid,
    upsert_node,
    wait_for,
)
from tests.support.atpd import AtpdProcess

pytestmark = pytest.mark.integration

LIMIT = 10**12
HUGE_ID = "x" * 100_000


@pytest.fixture(scope="module")
def canary(api: Api) -> tuple[str, str]:
    """A position every hostile test leaves alone; checked at the end of the module."""
    sku, node_id = stocked(api, 50)
    reserve(api, line("l1", sku, node_id, 5))
    return sku, node_id


class Unchanged:
    """The state of some SKUs (and the node list) as a client reads it, to compare later."""

    def __init__(self, api: Api, skus: list[str]) -> None:
        self.api = api
        self.skus = skus
        self.state: dict[str, Any] | None = None

    def track(self, *more: str) -> None:
        """Adds SKUs and (re)takes the reference snapshot: call it after the test's setup."""
        self.skus.extend(more)
        self.state = snapshot(self.api, self.skus)

    def verify(self) -> None:
        """Asserts nothing changed; the test may then change things on purpose."""
        if self.state is not None:
            assert snapshot(self.api, self.skus) == self.state, "a refused call changed the ledger"
        self.state = None


@pytest.fixture
def unchanged(api: Api, canary: tuple[str, str]) -> Iterator[Unchanged]:
    """After the test, asserts that nothing about the tracked SKUs changed since track()."""
    tracker = Unchanged(api, [canary[0]])
    tracker.track()
    yield tracker
    tracker.verify()


# ----- INVALID_ARGUMENT + BadRequest -------------------------------------------------------


def test_empty_ids_are_invalid_argument_naming_each_field(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 10)
    unchanged.track(sku)
    expect_error(
        api.reservations.Reserve,
        reserve_request("", [line("", "", node_id, 1)]),
        Code.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        fields=["reservation_id", "lines[0].line_id", "lines[0].sku"],
    )
    expect_error(
        api.inventory.AdjustStock,
        inventory_pb2.AdjustStockRequest(
            request_id="", movements=[movement("", "", Movement.RECEIPT, 1)]
        ),
        Code.INVALID_ARGUMENT,
        fields=["request_id", "movements[0].sku", "movements[0].node_id"],
    )
    expect_error(
        api.inventory.UpsertNode,
        inventory_pb2.UpsertNodeRequest(node=common_pb2.Node()),
        Code.INVALID_ARGUMENT,
        fields=["node.node_id"],
    )
    expect_error(
        api.inventory.PlaceHold,
        inventory_pb2.PlaceHoldRequest(hold=common_pb2.Hold(sku=sku, node_id=node_id, quantity=1)),
        Code.INVALID_ARGUMENT,
        fields=["hold.hold_id"],
    )
    expect_error(
        api.inventory.ReleaseHold,
        inventory_pb2.ReleaseHoldRequest(),
        Code.INVALID_ARGUMENT,
        fields=["hold_id"],
    )
    expect_error(
        api.inventory.UpsertSupply,
        inventory_pb2.UpsertSupplyRequest(
            supply=common_pb2.Supply(
                sku=sku, node_id=node_id, quantity=1, expected_date=pb_date(day(1))
            )
        ),
        Code.INVALID_ARGUMENT,
        fields=["supply.supply_id"],
    )
    expect_error(
        api.inventory.SetSafetyStock,
        inventory_pb2.SetSafetyStockRequest(node_id=node_id, quantity=1),
        Code.INVALID_ARGUMENT,
        fields=["sku"],
    )
    expect_error(
        api.availability.GetAvailability,
        availability_pb2.GetAvailabilityRequest(skus=[""]),
        Code.INVALID_ARGUMENT,
        fields=["skus[0]"],
    )
    expect_error(
        api.reservations.GetReservation,
        reservations_pb2.GetReservationRequest(),
        Code.INVALID_ARGUMENT,
        fields=["reservation_id"],
    )


def test_request_id_is_required_on_every_mutating_call_that_carries_one(
    api: Api, unchanged: Unchanged
) -> None:
    sku, node_id = stocked(api, 10)
    held = reserve(api, line("l1", sku, node_id, 2)).reservation_id
    committed = reserve(api, line("l1", sku, node_id, 2), commit=True).reservation_id
    supply_id = create_supply(api, sku, node_id, 5, 2)
    unchanged.track(sku)
    for method, request in [
        (
            api.inventory.AdjustStock,
            inventory_pb2.AdjustStockRequest(
                movements=[movement(sku, node_id, Movement.RECEIPT, 1)]
            ),
        ),
        (
            api.inventory.ReceiveSupply,
            inventory_pb2.ReceiveSupplyRequest(supply_id=supply_id, quantity=1),
        ),
        (api.reservations.Commit, reservations_pb2.CommitRequest(reservation_id=held)),
        (api.reservations.Release, reservations_pb2.ReleaseRequest(reservation_id=held)),
        (api.reservations.Fulfill, reservations_pb2.FulfillRequest(reservation_id=committed)),
    ]:
        expect_error(
            method, request, Code.INVALID_ARGUMENT, "INVALID_ARGUMENT", fields=["request_id"]
        )


def test_100_kb_ids_are_refused(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 10)
    unchanged.track(sku)
    expect_error(
        api.reservations.Reserve,
        reserve_request(HUGE_ID, [line("l1", sku, node_id, 1)]),
        Code.INVALID_ARGUMENT,
        fields=["reservation_id"],
    )
    expect_error(
        api.reservations.Reserve,
        reserve_request(None, [line(HUGE_ID, sku, node_id, 1)]),
        Code.INVALID_ARGUMENT,
        fields=["lines[0].line_id"],
    )
    expect_error(
        api.reservations.Reserve,
        reserve_request(None, [line("l1", HUGE_ID, node_id, 1)]),
        Code.INVALID_ARGUMENT,
        fields=["lines[0].sku"],
    )
    expect_error(
        api.reservations.Reserve,
        reserve_request(None, [line("l1", sku, HUGE_ID, 1)]),
        Code.INVALID_ARGUMENT,
        fields=["lines[0].node_id"],
    )
    expect_error(
        api.inventory.AdjustStock,
        inventory_pb2.AdjustStockRequest(
            request_id=HUGE_ID, movements=[movement(sku, node_id, Movement.RECEIPT, 1)]
        ),
        Code.INVALID_ARGUMENT,
        fields=["request_id"],
    )
    expect_error(
        api.inventory.AdjustStock,
        inventory_pb2.AdjustStockRequest(
            request_id=uid("adj"), movements=[movement(HUGE_ID, node_id, Movement.RECEIPT, 1)]
        ),
        Code.INVALID_ARGUMENT,
        fields=["movements[0].sku"],
    )
    expect_error(
        api.inventory.UpsertNode,
        inventory_pb2.UpsertNodeRequest(node=common_pb2.Node(node_id=HUGE_ID)),
        Code.INVALID_ARGUMENT,
        fields=["node.node_id"],
    )
    expect_error(
        api.inventory.PlaceHold,
        inventory_pb2.PlaceHoldRequest(
            hold=common_pb2.Hold(hold_id=HUGE_ID, sku=sku, node_id=node_id, quantity=1)
        ),
        Code.INVALID_ARGUMENT,
        fields=["hold.hold_id"],
    )
    expect_error(
        api.reservations.Commit,
        reservations_pb2.CommitRequest(reservation_id=HUGE_ID, request_id="r"),
        Code.INVALID_ARGUMENT,
        fields=["reservation_id"],
    )
    # 129 bytes is one too many; 128 is fine.
    expect_error(
        api.reservations.Reserve,
        reserve_request("r" * 129, [line("l1", sku, node_id, 1)]),
        Code.INVALID_ARGUMENT,
        fields=["reservation_id"],
    )
    nodes = api.inventory.ListNodes(inventory_pb2.ListNodesRequest(), timeout=CALL_TIMEOUT).nodes
    assert all(len(n.node_id) <= 128 for n in nodes)


def test_id_limit_counts_utf8_bytes_not_characters(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 10)
    unchanged.track(sku)
    expect_error(
        api.reservations.Reserve,
        reserve_request("é" * 65, [line("l1", sku, node_id, 1)]),
        Code.INVALID_ARGUMENT,
        fields=["reservation_id"],
    )  # 65 characters, 130 bytes
    unchanged.verify()
    assert reserve(api, line("é" * 64, sku, node_id, 1)).lines[0].line_id == "é" * 64


def test_get_reservation_with_a_100_kb_id_is_invalid_argument(api: Api) -> None:
    expect_error(
        api.reservations.GetReservation,
        reservations_pb2.GetReservationRequest(reservation_id=HUGE_ID),
        Code.INVALID_ARGUMENT,
        fields=["reservation_id"],
    )


def test_an_unknown_read_consistency_is_invalid_argument_and_stale_reads_answer(
    api: Api,
) -> None:
    sku, node = stocked(api, 5)
    bad = availability_pb2.GetAvailabilityRequest(skus=[sku], consistency=9)
    expect_error(api.availability.GetAvailability, bad, Code.INVALID_ARGUMENT,
                 fields=["consistency"])
    stale = availability_pb2.GetAvailabilityRequest(
        skus=[sku], consistency=common_pb2.READ_CONSISTENCY_STALE)
    reply = api.availability.GetAvailability(stale, timeout=CALL_TIMEOUT)
    assert [(p.node_id, p.on_hand) for p in reply.positions] == [(node, 5)]


def test_non_printable_ids_are_refused(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 10)
    unchanged.track(sku)
    expect_error(
        api.reservations.Reserve,
        reserve_request("a\x00b", [line("l1", sku, node_id, 1)]),
        Code.INVALID_ARGUMENT,
        fields=["reservation_id"],
    )
    expect_error(
        api.inventory.AdjustStock,
        inventory_pb2.AdjustStockRequest(
            request_id=uid("adj"), movements=[movement("s\nku", node_id, Movement.RECEIPT, 1)]
        ),
        Code.INVALID_ARGUMENT,
        fields=["movements[0].sku"],
    )


@pytest.mark.parametrize("quantity", [0, -1, -(2**63), LIMIT + 1, 2**63 - 1])
def test_bad_quantities_are_refused_everywhere(
    api: Api, unchanged: Unchanged, quantity: int
) -> None:
    sku, node_id = stocked(api, 10)
    reservation = reserve(api, line("l1", sku, node_id, 2), commit=True).reservation_id
    supply_id = create_supply(api, sku, node_id, 5, 2)
    unchanged.track(sku)
    expect_error(
        api.reservations.Reserve,
        reserve_request(None, [line("l1", sku, node_id, quantity)]),
        Code.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        fields=["lines[0].quantity"],
    )
    for kind in (Movement.RECEIPT, Movement.RETURN, Movement.SHRINKAGE, Movement.DAMAGE):
        expect_error(
            api.inventory.AdjustStock,
            inventory_pb2.AdjustStockRequest(
                request_id=uid("adj"), movements=[movement(sku, node_id, kind, quantity)]
            ),
            Code.INVALID_ARGUMENT,
            fields=["movements[0].quantity"],
        )
    expect_error(
        api.inventory.PlaceHold,
        inventory_pb2.PlaceHoldRequest(
            hold=common_pb2.Hold(
                hold_id=uid("h"), sku=sku, node_id=node_id, quantity=quantity, force=True
            )
        ),
        Code.INVALID_ARGUMENT,
        fields=["hold.quantity"],
    )
    expect_error(
        api.inventory.ReceiveSupply,
        inventory_pb2.ReceiveSupplyRequest(
            request_id=uid("r"), supply_id=supply_id, quantity=quantity
        ),
        Code.INVALID_ARGUMENT,
        fields=["quantity"],
    )
    expect_error(
        api.reservations.Fulfill,
        reservations_pb2.FulfillRequest(
            reservation_id=reservation,
            request_id=uid("f"),
            lines=[common_pb2.LineQuantity(line_id="l1", quantity=quantity)],
        ),
        Code.INVALID_ARGUMENT,
        fields=["lines[0].quantity"],
    )
    if quantity != 0:  # 0 is allowed for these
        expect_error(
            api.inventory.AdjustStock,
            inventory_pb2.AdjustStockRequest(
                request_id=uid("adj"),
                movements=[movement(sku, node_id, Movement.CYCLE_COUNT, quantity)],
            ),
            Code.INVALID_ARGUMENT,
            fields=["movements[0].quantity"],
        )
        expect_error(
            api.inventory.SetSafetyStock,
            inventory_pb2.SetSafetyStockRequest(sku=sku, node_id=node_id, quantity=quantity),
            Code.INVALID_ARGUMENT,
            fields=["quantity"],
        )
        expect_error(
            api.inventory.UpsertSupply,
            inventory_pb2.UpsertSupplyRequest(
                supply=common_pb2.Supply(
                    supply_id=supply_id, quantity=quantity, expected_date=pb_date(day(2))
                )
            ),
            Code.INVALID_ARGUMENT,
            fields=["supply.quantity"],
        )


def test_quantity_at_the_limit_is_accepted_but_on_hand_may_not_pass_it(api: Api) -> None:
    sku, node_id = stocked(api, LIMIT)
    assert_position(api, sku, node_id, on_hand=LIMIT, available=LIMIT)
    before = snapshot(api, [sku])
    expect_error(
        api.inventory.AdjustStock,
        inventory_pb2.AdjustStockRequest(
            request_id=uid("adj"), movements=[movement(sku, node_id, Movement.RECEIPT, 1)]
        ),
        Code.INVALID_ARGUMENT,
        fields=["movements[0].quantity"],
    )
    assert snapshot(api, [sku]) == before
    reserve(api, line("l1", sku, node_id, LIMIT))
    assert_position(api, sku, node_id, on_hand=LIMIT, reserved=LIMIT, available=0)


def test_too_many_lines_and_movements_are_refused(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 10_000)
    unchanged.track(sku)
    lines = [line(f"l{i}", sku, node_id, 1) for i in range(5_000)]
    expect_error(
        api.reservations.Reserve,
        reserve_request(None, lines),
        Code.INVALID_ARGUMENT,
        fields=["lines"],
    )
    expect_error(
        api.reservations.Reserve,
        reserve_request(None, lines[:501]),
        Code.INVALID_ARGUMENT,
        fields=["lines"],
    )
    expect_error(
        api.reservations.Reserve, reserve_request(None, []), Code.INVALID_ARGUMENT, fields=["lines"]
    )
    movements = [movement(sku, node_id, Movement.RECEIPT, 1) for _ in range(5_000)]
    expect_error(
        api.inventory.AdjustStock,
        inventory_pb2.AdjustStockRequest(request_id=uid("adj"), movements=movements),
        Code.INVALID_ARGUMENT,
        fields=["movements"],
    )
    expect_error(
        api.inventory.AdjustStock,
        inventory_pb2.AdjustStockRequest(request_id=uid("adj")),
        Code.INVALID_ARGUMENT,
        fields=["movements"],
    )
    expect_error(
        api.availability.GetAvailability,
        availability_pb2.GetAvailabilityRequest(skus=[sku] * 5_000),
        Code.INVALID_ARGUMENT,
        fields=["skus"],
    )
    releases = [common_pb2.LineQuantity(line_id=f"l{i}", quantity=1) for i in range(5_000)]
    held = reserve(api, line("l0", sku, node_id, 1)).reservation_id
    unchanged.track()
    expect_error(
        api.reservations.Release,
        reservations_pb2.ReleaseRequest(reservation_id=held, request_id=uid("rel"), lines=releases),
        Code.INVALID_ARGUMENT,
        fields=["lines"],
    )


def test_500_lines_is_the_limit_and_is_accepted(api: Api) -> None:
    sku, node_id = stocked(api, 1_000)
    reservation = reserve(api, *[line(f"l{i}", sku, node_id, 2) for i in range(500)])
    assert len(reservation.lines) == 500
    assert_position(api, sku, node_id, reserved=1_000, available=0)
    committed = commit(api, reservation.reservation_id)
    assert committed.state == State.COMMITTED
    assert_position(api, sku, node_id, reserved=0, allocated=1_000, available=0)


def test_duplicate_line_ids_are_refused(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 10)
    held = reserve(api, line("l1", sku, node_id, 2), line("l2", sku, node_id, 2)).reservation_id
    unchanged.track(sku)
    failure = expect_error(
        api.reservations.Reserve,
        reserve_request(
            None,
            [line("a", sku, node_id, 1), line("b", sku, node_id, 1), line("a", sku, node_id, 1)],
        ),
        Code.INVALID_ARGUMENT,
        fields=["lines[2].line_id"],
    )
    assert "lines[1].line_id" not in failure.fields
    expect_error(
        api.reservations.Release,
        reservations_pb2.ReleaseRequest(
            reservation_id=held,
            request_id=uid("rel"),
            lines=[
                common_pb2.LineQuantity(line_id="l1", quantity=1),
                common_pb2.LineQuantity(line_id="l1", quantity=1),
            ],
        ),
        Code.INVALID_ARGUMENT,
        fields=["lines[1].line_id"],
    )


def test_unknown_enum_values_are_refused(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 10)
    unchanged.track(sku)
    for bad_type in (99, 0, -5):
        expect_error(
            api.inventory.AdjustStock,
            inventory_pb2.AdjustStockRequest(
                request_id=uid("adj"), movements=[movement(sku, node_id, bad_type, 1)]
            ),
            Code.INVALID_ARGUMENT,
            fields=["movements[0].type"],
        )
    request = reserve_request(None, [line("l1", sku, node_id, 1)])
    request.policy.objective = 99  # type: ignore[assignment]
    expect_error(
        api.reservations.Reserve, request, Code.INVALID_ARGUMENT, fields=["policy.objective"]
    )
    expect_error(
        api.reservations.ListReservations,
        reservations_pb2.ListReservationsRequest(state=42),  # type: ignore[arg-type]
        Code.INVALID_ARGUMENT,
        fields=["state"],
    )


def test_other_out_of_range_fields_are_refused(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 10)
    unchanged.track(sku)
    for ttl in (-1, 604_801):
        expect_error(
            api.reservations.Reserve,
            reserve_request(None, [line("l1", sku, node_id, 1)], ttl_seconds=ttl),
            Code.INVALID_ARGUMENT,
            fields=["ttl_seconds"],
        )
    expect_error(
        api.reservations.Reserve,
        reserve_request(None, [line("l1", sku, node_id, 1, ship_date=day(-1))]),
        Code.INVALID_ARGUMENT,
        fields=["lines[0].ship_date"],
    )
    bad_date = reserve_request(None, [line("l1", sku, node_id, 1)])
    (
        bad_date.lines[0].ship_date.year,
        bad_date.lines[0].ship_date.month,
        bad_date.lines[0].ship_date.day,
    ) = 2030, 2, 30
    expect_error(
        api.reservations.Reserve, bad_date, Code.INVALID_ARGUMENT, fields=["lines[0].ship_date"]
    )
    expect_error(
        api.inventory.UpsertSupply,
        inventory_pb2.UpsertSupplyRequest(
            supply=common_pb2.Supply(supply_id=uid("po"), sku=sku, node_id=node_id, quantity=1)
        ),
        Code.INVALID_ARGUMENT,
        fields=["supply.expected_date"],
    )
    expect_error(
        api.inventory.UpsertNode,
        inventory_pb2.UpsertNodeRequest(node=common_pb2.Node(node_id=node_id, handling_days=-1)),
        Code.INVALID_ARGUMENT,
        fields=["node.handling_days"],
    )
    expect_error(
        api.inventory.ListHolds,
        inventory_pb2.ListHoldsRequest(page_size=1001),
        Code.INVALID_ARGUMENT,
        fields=["page_size"],
    )
    # Found by a contract review against 01834d6: over-long filter ids were answered with
    # an empty list, where every other call refuses them.
    for call, request_type in ((api.reservations.ListReservations, reservations_pb2.ListReservationsRequest),
                               (api.inventory.ListSupply, inventory_pb2.ListSupplyRequest),
                               (api.inventory.ListHolds, inventory_pb2.ListHoldsRequest)):
        expect_error(call, request_type(sku="x" * 129, node_id="y" * 129), Code.INVALID_ARGUMENT,
                     fields=["sku", "node_id"])
    # Found by a contract review against 01834d6: "!!!", "AAAA" and "Zm9v" restarted or
    # ended the listing. A holds token is no reservations token either.
    holds_token = api.inventory.ListHolds(
        inventory_pb2.ListHoldsRequest(page_size=1), timeout=CALL_TIMEOUT).next_page_token
    for token in ("%%% not a token", "!!!", "AAAA", "Zm9v", holds_token or "aG9sZHM6eA=="):
        expect_error(
            api.reservations.ListReservations,
            reservations_pb2.ListReservationsRequest(page_token=token),
            Code.INVALID_ARGUMENT,
            fields=["page_token"],
        )
    expect_error(
        api.inventory.AdjustStock,
        inventory_pb2.AdjustStockRequest(
            request_id=uid("adj"),
            movements=[movement(sku, node_id, Movement.TRANSFER, 1, to_node_id=node_id)],
        ),
        Code.INVALID_ARGUMENT,
        fields=["movements[0].to_node_id"],
    )
    expect_error(
        api.inventory.AdjustStock,
        inventory_pb2.AdjustStockRequest(
            request_id=uid("adj"),
            movements=[movement(sku, node_id, Movement.RECEIPT, 1, to_node_id=node_id + "x")],
        ),
        Code.INVALID_ARGUMENT,
        fields=["movements[0].to_node_id"],
    )
    expect_error(
        api.reservations.Reserve,
        reserve_request(None, [line("l1", sku, node_id, 1, ship_date=day(20 * 366))]),
        Code.INVALID_ARGUMENT,
        fields=["lines[0].ship_date"],
    )
    expect_error(
        api.reservations.ListReservations,
        reservations_pb2.ListReservationsRequest(page_size=-1),
        Code.INVALID_ARGUMENT,
        fields=["page_size"],
    )
    # Nodes: kind charset, duplicate lane regions.
    expect_error(
        api.inventory.UpsertNode,
        inventory_pb2.UpsertNodeRequest(node=common_pb2.Node(node_id=node_id, kind="dc-1")),
        Code.INVALID_ARGUMENT,
        fields=["node.kind"],
    )
    expect_error(
        api.inventory.UpsertNode,
        inventory_pb2.UpsertNodeRequest(
            node=common_pb2.Node(
                node_id=node_id,
                lanes=[
                    common_pb2.Lane(region="EU", transit_days=1),
                    common_pb2.Lane(region="EU", transit_days=2),
                ],
            )
        ),
        Code.INVALID_ARGUMENT,
        fields=["node.lanes[1].region"],
    )
    # Holds: an expire_time in the past or not a valid timestamp.
    for seconds, nanos in ((1, 0), (253_402_300_800 + 1, 0), (4_000_000_000, -1)):
        hold = common_pb2.Hold(hold_id=uid("h"), sku=sku, node_id=node_id, quantity=1)
        hold.expire_time.seconds, hold.expire_time.nanos = seconds, nanos
        expect_error(
            api.inventory.PlaceHold,
            inventory_pb2.PlaceHoldRequest(hold=hold),
            Code.INVALID_ARGUMENT,
            fields=["hold.expire_time"],
        )
    # Supply: sku and node are immutable once created.
    supply_id = create_supply(api, sku, node_id, 1, 1)
    unchanged.track()
    expect_error(
        api.inventory.UpsertSupply,
        inventory_pb2.UpsertSupplyRequest(
            supply=common_pb2.Supply(
                supply_id=supply_id,
                sku=sku + "-other",
                node_id=node_id,
                quantity=1,
                expected_date=pb_date(day(1)),
            )
        ),
        Code.INVALID_ARGUMENT,
        fields=["supply.sku"],
    )


def test_reserve_batch_outside_1_to_1000_requests_is_refused_and_1000_is_accepted(
    api: Api, unchanged: Unchanged
) -> None:
    sku, node_id = stocked(api, 5_000)
    unchanged.track(sku)
    expect_error(
        api.reservations.ReserveBatch,
        reservations_pb2.ReserveBatchRequest(),
        Code.INVALID_ARGUMENT,
        fields=["requests"],
    )
    requests = [reserve_request(None, [line("l1", sku, node_id, 1)]) for _ in range(1001)]
    expect_error(
        api.reservations.ReserveBatch,
        reservations_pb2.ReserveBatchRequest(requests=requests),
        Code.INVALID_ARGUMENT,
        fields=["requests"],
    )
    unchanged.verify()
    # 1,000 is the limit and is accepted.
    reply = api.reservations.ReserveBatch(
        reservations_pb2.ReserveBatchRequest(requests=requests[:1000]), timeout=CALL_TIMEOUT
    )
    assert [r.WhichOneof("result") for r in reply.results] == ["reservation"] * 1000
    assert_position(api, sku, node_id, on_hand=5_000, reserved=1_000, available=4_000)


# ----- NOT_FOUND + ResourceInfo ------------------------------------------------------------


def test_unknown_node_is_not_found_everywhere(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 10)
    unchanged.track(sku)
    missing = uid("no-node")
    checks = {"resource_type": "node", "resource_name": missing}
    expect_error(
        api.reservations.Reserve,
        reserve_request(None, [line("l1", sku, missing, 1)]),
        Code.NOT_FOUND,
        "NOT_FOUND",
        **checks,
    )
    for kind in (Movement.RECEIPT, Movement.SHRINKAGE, Movement.CYCLE_COUNT):
        expect_error(
            api.inventory.AdjustStock,
            inventory_pb2.AdjustStockRequest(
                request_id=uid("adj"), movements=[movement(sku, missing, kind, 1)]
            ),
            Code.NOT_FOUND,
            **checks,
        )
    expect_error(
        api.inventory.AdjustStock,
        inventory_pb2.AdjustStockRequest(
            request_id=uid("adj"),
            movements=[movement(sku, node_id, Movement.TRANSFER, 1, to_node_id=missing)],
        ),
        Code.NOT_FOUND,
        **checks,
    )
    expect_error(
        api.inventory.SetSafetyStock,
        inventory_pb2.SetSafetyStockRequest(sku=sku, node_id=missing, quantity=1),
        Code.NOT_FOUND,
        **checks,
    )
    expect_error(
        api.inventory.UpsertSupply,
        inventory_pb2.UpsertSupplyRequest(
            supply=common_pb2.Supply(
                supply_id=uid("po"),
                sku=sku,
                node_id=missing,
                quantity=1,
                expected_date=pb_date(day(1)),
            )
        ),
        Code.NOT_FOUND,
        **checks,
    )
    expect_error(
        api.inventory.PlaceHold,
        inventory_pb2.PlaceHoldRequest(
            hold=common_pb2.Hold(hold_id=uid("h"), sku=sku, node_id=missing, quantity=1, force=True)
        ),
        Code.NOT_FOUND,
        **checks,
    )
    expect_error(
        api.availability.GetAvailability,
        availability_pb2.GetAvailabilityRequest(skus=[sku], node_ids=[missing]),
        Code.NOT_FOUND,
        **checks,
    )


def test_sku_never_seen_is_not_found(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 10)
    unchanged.track(sku)
    missing = uid("no-sku")
    checks = {"resource_type": "sku", "resource_name": missing}
    expect_error(
        api.availability.GetAvailability,
        availability_pb2.GetAvailabilityRequest(skus=[missing]),
        Code.NOT_FOUND,
        "NOT_FOUND",
        **checks,
    )
    expect_error(
        api.reservations.Reserve,
        reserve_request(None, [line("l1", missing, node_id, 1)]),
        Code.NOT_FOUND,
        **checks,
    )
    for kind in (Movement.SHRINKAGE, Movement.DAMAGE):
        expect_error(
            api.inventory.AdjustStock,
            inventory_pb2.AdjustStockRequest(
                request_id=uid("adj"), movements=[movement(missing, node_id, kind, 1)]
            ),
            Code.NOT_FOUND,
            **checks,
        )
    expect_error(
        api.inventory.PlaceHold,
        inventory_pb2.PlaceHoldRequest(
            hold=common_pb2.Hold(
                hold_id=uid("h"), sku=missing, node_id=node_id, quantity=1, force=True
            )
        ),
        Code.NOT_FOUND,
        **checks,
    )
    # Still never seen: none of the refusals made it known.
    expect_error(
        api.availability.GetAvailability,
        availability_pb2.GetAvailabilityRequest(skus=[missing]),
        Code.NOT_FOUND,
        **checks,
    )


def test_unknown_reservation_hold_and_supply_are_not_found(api: Api, unchanged: Unchanged) -> None:
    missing = uid("missing")
    reservation = {"resource_type": "reservation", "resource_name": missing}
    expect_error(
        api.reservations.GetReservation,
        reservations_pb2.GetReservationRequest(reservation_id=missing),
        Code.NOT_FOUND,
        "NOT_FOUND",
        **reservation,
    )
    expect_error(
        api.reservations.Commit,
        reservations_pb2.CommitRequest(reservation_id=missing, request_id=uid("c")),
        Code.NOT_FOUND,
        **reservation,
    )
    expect_error(
        api.reservations.Release,
        reservations_pb2.ReleaseRequest(reservation_id=missing, request_id=uid("r")),
        Code.NOT_FOUND,
        **reservation,
    )
    expect_error(
        api.reservations.Fulfill,
        reservations_pb2.FulfillRequest(reservation_id=missing, request_id=uid("f")),
        Code.NOT_FOUND,
        **reservation,
    )
    expect_error(
        api.inventory.ReleaseHold,
        inventory_pb2.ReleaseHoldRequest(hold_id=missing),
        Code.NOT_FOUND,
        resource_type="hold",
        resource_name=missing,
    )
    expect_error(
        api.inventory.ReceiveSupply,
        inventory_pb2.ReceiveSupplyRequest(request_id=uid("r"), supply_id=missing, quantity=1),
        Code.NOT_FOUND,
        resource_type="supply",
        resource_name=missing,
    )


# ----- FAILED_PRECONDITION -----------------------------------------------------------------


def test_not_enough_available_lists_each_short_line_with_what_is_available(
    api: Api, unchanged: Unchanged
) -> None:
    sku, node_id = stocked(api, 7)
    reserve(api, line("l0", sku, node_id, 3))
    unchanged.track(sku)
    failure = expect_error(
        api.reservations.Reserve,
        reserve_request(None, [line("ok", sku, node_id, 1), line("big", sku, node_id, 9)]),
        Code.FAILED_PRECONDITION,
        "INSUFFICIENT_AVAILABILITY",
    )
    [violation] = failure.precondition.violations
    assert violation.subject == "line big"
    assert "requested 9, available 3" in violation.description  # 4 available, 1 taken by "ok"


def test_commit_of_an_expired_reservation_is_reservation_expired(
    api: Api, unchanged: Unchanged
) -> None:
    sku, node_id = stocked(api, 10)
    held = reserve(api, line("l1", sku, node_id, 4), ttl_seconds=1).reservation_id
    wait_for(lambda: get_reservation(api, held).state == State.EXPIRED, timeout_s=10)
    assert_position(api, sku, node_id, reserved=0, available=10)
    unchanged.track(sku)
    expect_error(
        api.reservations.Commit,
        reservations_pb2.CommitRequest(reservation_id=held, request_id=uid("c")),
        Code.FAILED_PRECONDITION,
        "RESERVATION_EXPIRED",
    )
    # Releasing or shipping it is refused the same way.
    expect_error(
        api.reservations.Release,
        reservations_pb2.ReleaseRequest(reservation_id=held, request_id=uid("r")),
        Code.FAILED_PRECONDITION,
    )
    expect_error(
        api.reservations.Fulfill,
        reservations_pb2.FulfillRequest(reservation_id=held, request_id=uid("f")),
        Code.FAILED_PRECONDITION,
    )


def test_wrong_state_is_invalid_state(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 10)
    released = reserve(api, line("l1", sku, node_id, 1)).reservation_id
    release(api, released)
    shipped = reserve(api, line("l1", sku, node_id, 1), commit=True).reservation_id
    fulfill(api, shipped)
    held = reserve(api, line("l1", sku, node_id, 1)).reservation_id
    unchanged.track(sku)
    for reservation_id in (released, shipped):
        expect_error(
            api.reservations.Commit,
            reservations_pb2.CommitRequest(reservation_id=reservation_id, request_id=uid("c")),
            Code.FAILED_PRECONDITION,
            "INVALID_STATE",
        )
        expect_error(
            api.reservations.Release,
            reservations_pb2.ReleaseRequest(reservation_id=reservation_id, request_id=uid("r")),
            Code.FAILED_PRECONDITION,
            "INVALID_STATE",
        )
        expect_error(
            api.reservations.Fulfill,
            reservations_pb2.FulfillRequest(reservation_id=reservation_id, request_id=uid("f")),
            Code.FAILED_PRECONDITION,
            "INVALID_STATE",
        )
    expect_error(
        api.reservations.Fulfill,
        reservations_pb2.FulfillRequest(reservation_id=held, request_id=uid("f")),
        Code.FAILED_PRECONDITION,
        "INVALID_STATE",
    )
    assert get_reservation(api, held).state == State.HELD


def test_inactive_node_takes_no_new_reservations(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 10)
    existing = reserve(api, line("l1", sku, node_id, 2)).reservation_id
    upsert_node(api, node_id, active=False)
    unchanged.track(sku)
    expect_error(
        api.reservations.Reserve,
        reserve_request(None, [line("l1", sku, node_id, 1)]),
        Code.FAILED_PRECONDITION,
        "NODE_INACTIVE",
    )
    # Deactivating keeps stock and reservations.
    assert_position(api, sku, node_id, on_hand=10, reserved=2)
    assert get_reservation(api, existing).state == State.HELD


def test_ship_date_before_today_plus_handling_days_is_infeasible(
    api: Api, unchanged: Unchanged
) -> None:
    sku, node_id = stocked(api, 10, handling_days=3)
    unchanged.track(sku)
    for offset in (0, 2):
        failure = expect_error(
            api.reservations.Reserve,
            reserve_request(None, [line("l1", sku, node_id, 1, ship_date=day(offset))]),
            Code.FAILED_PRECONDITION,
            "SHIP_DATE_INFEASIBLE",
        )
        assert failure.precondition is not None
        assert failure.precondition.violations[0].subject == "l1"  # the line it is about


def test_fulfilling_more_than_on_hand_is_insufficient_on_hand(
    api: Api, unchanged: Unchanged
) -> None:
    sku, node_id = stocked(api, 10)
    committed = reserve(api, line("l1", sku, node_id, 5), commit=True).reservation_id
    adjust(api, movement(sku, node_id, Movement.CYCLE_COUNT, 2))  # the count finds only 2
    assert_position(api, sku, node_id, on_hand=2, allocated=5, available=0, short=True)
    unchanged.track(sku)
    expect_error(
        api.reservations.Fulfill,
        reservations_pb2.FulfillRequest(reservation_id=committed, request_id=uid("f")),
        Code.FAILED_PRECONDITION,
        "INSUFFICIENT_ON_HAND",
    )
    unchanged.verify()
    # Shipping what is there works.
    partly = fulfill(api, committed, [("l1", 2)])
    assert partly.lines[0].fulfilled_quantity == 2


def test_receiving_more_than_the_open_quantity_is_refused(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 0)
    supply_id = create_supply(api, sku, node_id, 5, 2)
    unchanged.track(sku)
    expect_error(
        api.inventory.ReceiveSupply,
        inventory_pb2.ReceiveSupplyRequest(request_id=uid("r"), supply_id=supply_id, quantity=6),
        Code.FAILED_PRECONDITION,
        "QUANTITY_EXCEEDS_OPEN",
    )


def test_hold_beyond_available_is_insufficient_availability(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 3)
    unchanged.track(sku)
    expect_error(
        api.inventory.PlaceHold,
        inventory_pb2.PlaceHoldRequest(
            hold=common_pb2.Hold(hold_id=uid("h"), sku=sku, node_id=node_id, quantity=4)
        ),
        Code.FAILED_PRECONDITION,
        "INSUFFICIENT_AVAILABILITY",
    )


# ----- ALREADY_EXISTS ----------------------------------------------------------------------


def test_same_id_with_a_different_request_is_already_exists(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 10)
    reservation = reserve(api, line("l1", sku, node_id, 1))
    hold_id = uid("h")
    api.inventory.PlaceHold(
        inventory_pb2.PlaceHoldRequest(
            hold=common_pb2.Hold(hold_id=hold_id, sku=sku, node_id=node_id, quantity=1)
        )
    )
    request_id = uid("adj")
    adjust(api, movement(sku, node_id, Movement.RECEIPT, 1), request_id=request_id)
    commit_id = uid("c")
    commit(api, reservation.reservation_id, commit_id)
    unchanged.track(sku)

    expect_error(
        api.reservations.Reserve,
        reserve_request(reservation.reservation_id, [line("l1", sku, node_id, 2)]),
        Code.ALREADY_EXISTS,
        "ALREADY_EXISTS",
        resource_type="reservation",
    )
    expect_error(
        api.inventory.PlaceHold,
        inventory_pb2.PlaceHoldRequest(
            hold=common_pb2.Hold(hold_id=hold_id, sku=sku, node_id=node_id, quantity=2)
        ),
        Code.ALREADY_EXISTS,
        resource_type="hold",
    )
    expect_error(
        api.inventory.AdjustStock,
        inventory_pb2.AdjustStockRequest(
            request_id=request_id, movements=[movement(sku, node_id, Movement.RECEIPT, 2)]
        ),
        Code.ALREADY_EXISTS,
    )
    # An idempotency key is one request: reusing a Commit's key for a Release is a conflict.
    expect_error(
        api.reservations.Release,
        reservations_pb2.ReleaseRequest(
            reservation_id=reservation.reservation_id, request_id=commit_id
        ),
        Code.ALREADY_EXISTS,
    )


# ----- RESOURCE_EXHAUSTED and server health ------------------------------------------------


def test_a_message_over_4_mib_is_resource_exhausted(api: Api, unchanged: Unchanged) -> None:
    sku, node_id = stocked(api, 10)
    unchanged.track(sku)
    request = reserve_request(
        None, [line("l1", sku, node_id, 1)], customer_id="c" * (4 * 1024 * 1024 + 10)
    )
    with pytest.raises(grpc.RpcError) as raised:
        api.reservations.Reserve(request, timeout=CALL_TIMEOUT)
    assert raised.value.code() == Code.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    big_batch = reservations_pb2.ReserveBatchRequest(
        requests=[
            reserve_request(
                None, [line("l" + "x" * 100 + str(i), sku, node_id, 1) for i in range(500)]
            )
            for _ in range(100)
        ]
    )
    assert big_batch.ByteSize() > 4 * 1024 * 1024
    with pytest.raises(grpc.RpcError) as raised:
        api.reservations.ReserveBatch(big_batch, timeout=CALL_TIMEOUT)
    assert raised.value.code() == Code.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]


def test_server_is_healthy_and_serving_after_all_of_it(
    api: Api, module_atpd: AtpdProcess, canary: tuple[str, str]
) -> None:
    assert module_atpd.process is not None and module_atpd.process.poll() is None
    with grpc.insecure_channel(module_atpd.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    sku, node_id = canary
    assert_position(api, sku, node_id, on_hand=50, reserved=5, available=45)
    reservation = reserve(api, line("l1", sku, node_id, 1), commit=True)
    assert reservation.state == State.COMMITTED
    assert_position(api, sku, node_id, on_hand=50, reserved=5, allocated=1, available=44)
    assert (
        len(
            list_all(
                api.reservations.ListReservations,
                reservations_pb2.ListReservationsRequest(sku=sku),
                "reservations",
            )
        )
        == 2
    )


@pytest.mark.parametrize(
    "method",
    ["/atp.v1.Reservations/Reserve", "/atp.v1.Reservations/ReserveBatch",
     "/atp.v1.Inventory/AdjustStock", "/atp.v1.Availability/Promise"],
)
@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"\x0a\x02\xff\xfe"], ids=["corrupt", "bad-utf8"])
def test_request_bytes_that_do_not_decode_are_invalid_argument(
    api: Api, unchanged: Unchanged, method: str, raw: bytes
) -> None:
    """Not UNKNOWN with a Python class name: the client sent bad input."""
    call = api.channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    failure = expect_error(call, raw, Code.INVALID_ARGUMENT, fields=["request"])
    assert "not a valid atp.v1." in failure.message and "DecodeError" not in failure.message


def test_undecodable_watch_request_is_invalid_argument(api: Api) -> None:
    watch = api.channel.unary_stream("/atp.v1.Events/Watch", request_serializer=None,
                                     response_deserializer=None)
    with pytest.raises(grpc.RpcError) as raised:
        list(watch(b"\xff\xff", timeout=CALL_TIMEOUT))
    check_failure(failure_of(raised.value), Code.INVALID_ARGUMENT, fields=["request"])


def test_an_undecodable_stream_message_fails_that_message_only(api: Api) -> None:
    sku, node_id = stocked(api, 10)
    good = reserve_request(None, [line("l1", sku, node_id, 1)])
    raw_stream = api.channel.stream_stream("/atp.v1.Reservations/ReserveStream",
                                           request_serializer=None, response_deserializer=None)
    answers = [reservations_pb2.ReserveResult.FromString(data) for data in
               raw_stream(iter([b"\xff\xff", good.SerializeToString()]), timeout=CALL_TIMEOUT)]
    assert answers[0].reservation_id == "" and answers[0].status.code == Code.INVALID_ARGUMENT.value[0]
    assert "not a valid atp.v1.ReserveRequest" in answers[0].status.message
    assert answers[1].reservation.reservation_id == good.reservation_id
    assert_position(api, sku, node_id, on_hand=10, reserved=1, available=9)
