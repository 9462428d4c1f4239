"""convert: requests to commands, results to messages."""

from __future__ import annotations

from atp.ledger import commands
from atp.server import convert
from atp.v1 import common_pb2, reservations_pb2


def test_absent_and_all_default_policies_make_the_same_command() -> None:
    """An absent policy takes a shortcut; it must mean exactly what an empty one means."""
    lines = [reservations_pb2.ReserveRequest().lines.add(line_id="l1", sku="S", quantity=2)]
    bare = reservations_pb2.ReserveRequest(reservation_id="r1", lines=lines, ttl_seconds=60)
    explicit = reservations_pb2.ReserveRequest()
    explicit.CopyFrom(bare)
    explicit.policy.CopyFrom(common_pb2.FulfillmentPolicy())
    assert not bare.HasField("policy") and explicit.HasField("policy")
    assert convert.reserve(bare) == convert.reserve(explicit)
    assert commands.digest(convert.reserve(bare)) == commands.digest(convert.reserve(explicit))


def test_every_field_lands_in_its_place() -> None:
    request = reservations_pb2.ReserveRequest(
        reservation_id="r1", destination_region="EU", ttl_seconds=90, commit=True, priority=4,
        channel="web", customer_id="c9",
        policy=common_pb2.FulfillmentPolicy(ship_complete=True, max_nodes=2, allow_partial=True,
                                            objective=common_pb2.FulfillmentPolicy.CHEAPEST),
    )
    request.lines.add(line_id="l1", sku="S", quantity=3, node_id="N1").ship_date.year = 2027
    command = convert.reserve(request)
    assert command._asdict() | {"lines": None, "policy": None} == {
        "reservation_id": "r1", "lines": None, "destination_region": "EU", "policy": None,
        "ttl_seconds": 90, "commit": True, "priority": 4, "channel": "web", "customer_id": "c9",
        "allow_substitution": False,
    }
    assert command.lines == (commands.LineRequest("l1", "S", 3, "N1", (2027, 0, 0)),)
    assert (command.policy.ship_complete, command.policy.max_nodes, command.policy.allow_partial,
            command.policy.objective.value) == (True, 2, True, "CHEAPEST")


def test_promise_response_carries_every_part_of_the_plan() -> None:
    import datetime

    from atp.ledger.promising import (
        Allocation,
        Candidate,
        CandidateOutcome,
        LinePlan,
        OrderLine,
        OrderPlan,
    )

    day = datetime.date(2026, 12, 1).toordinal()
    split = LinePlan(OrderLine("l1", "S", 5), [Allocation("N1", 2, day, day + 2, False, 3),
                                             Allocation("N2", 1, day + 1, day + 4, True, 1)],
                     backorder_day=day + 9, candidates=[Candidate("N1", CandidateOutcome.CHOSEN, "chosen: 2 units"),
                                 Candidate("N3", CandidateOutcome.NO_STOCK_OR_SUPPLY, "no stock")])
    whole = LinePlan(OrderLine("l2", "T", 1), [Allocation("N1", 1, day, day + 2, False, 3)])
    response = convert.promise_response(OrderPlan([split, whole]))
    assert not response.complete
    assert (response.promise_date.year, response.promise_date.month, response.promise_date.day) == (2026, 12, 5)
    first, second = response.lines
    assert (first.line_id, first.backordered_quantity, first.backorder_date.day) == ("l1", 2, 10)
    assert [(a.node_id, a.quantity, a.ship_date.day, a.delivery_date.day, a.from_inbound)
            for a in first.allocations] == [("N1", 2, 1, 3, False), ("N2", 1, 2, 5, True)]
    assert [(c.node_id, c.outcome, c.detail) for c in first.candidates] == [
        ("N1", "CHOSEN", "chosen: 2 units"), ("N3", "NO_STOCK_OR_SUPPLY", "no stock")]
    assert (second.line_id, second.backordered_quantity, len(second.allocations)) == ("l2", 0, 1)
    assert not second.HasField("backorder_date") and not second.candidates
    assert convert.promise_response(OrderPlan([whole])).complete
