"""convert.reserve: the command a ReserveRequest becomes."""

from __future__ import annotations

from atp.ledger import commands as c
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
    assert c.digest(convert.reserve(bare)) == c.digest(convert.reserve(explicit))


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
    }
    assert command.lines == (c.LineRequest("l1", "S", 3, "N1", (2027, 0, 0)),)
    assert (command.policy.ship_complete, command.policy.max_nodes, command.policy.allow_partial,
            command.policy.objective.value) == (True, 2, True, "CHEAPEST")
