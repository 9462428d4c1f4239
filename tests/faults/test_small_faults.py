"""Small faults a review found, over the wire: blank ids, inbound over 10^12 on one position,
ReceiveSupply naming `quantity.quantity`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from atp import limits
from atp.v1 import common_pb2, inventory_pb2, reservations_pb2
from tests.integration.helpers import (
    Api,
    Code,
    Movement,
    create_supply,
    day,
    expect_error,
    failure_from_status,
    movement,
    pb_date,
    stocked,
    uid,
)
from tests.support.atpd import AtpdProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server = AtpdProcess(Path(tmp_path_factory.mktemp("small-faults")) / "data").start()
    client = Api(server.channel())
    try:
        yield client
    finally:
        client.close()
        assert server.stop() == 0, f"atpd did not stop cleanly; see {server.log_path}"


def test_blank_ids_are_invalid_argument_naming_the_field(api: Api) -> None:
    sku, node_id = stocked(api, 5)
    request = reservations_pb2.ReserveRequest(reservation_id="   ")
    request.lines.add(line_id="l1", sku=sku, node_id=node_id, quantity=1)
    failure = expect_error(api.reservations.Reserve, request, Code.INVALID_ARGUMENT,
                           fields=["reservation_id"])
    assert failure.bad_request is not None
    assert failure.bad_request.field_violations[0].description == "must not be blank (whitespace only)"
    expect_error(api.reservations.GetReservation,
                 reservations_pb2.GetReservationRequest(reservation_id=" "), Code.INVALID_ARGUMENT,
                 fields=["reservation_id"])
    expect_error(api.inventory.ListSupply, inventory_pb2.ListSupplyRequest(sku="  "),
                 Code.INVALID_ARGUMENT, fields=["sku"])
    # a batch item with a blank id fails alone
    batch = reservations_pb2.ReserveBatchRequest(requests=[request])
    result = api.reservations.ReserveBatch(batch).results[0]
    assert failure_from_status(result.status).code == Code.INVALID_ARGUMENT


def test_inbound_of_one_position_stays_within_the_quantity_limit(api: Api) -> None:
    sku, node_id = stocked(api, 0)
    create_supply(api, sku, node_id, limits.quantity_max, 5)
    second = common_pb2.Supply(supply_id=uid("po"), sku=sku, node_id=node_id,
                               quantity=limits.quantity_max, expected_date=pb_date(day(6)))
    expect_error(api.inventory.UpsertSupply, inventory_pb2.UpsertSupplyRequest(supply=second),
                 Code.INVALID_ARGUMENT, fields=["supply.quantity"])


def test_receive_over_the_on_hand_limit_names_the_request_field(api: Api) -> None:
    sku, node_id = stocked(api, limits.quantity_max)
    supply_id = create_supply(api, sku, node_id, 3, 5)
    failure = expect_error(
        api.inventory.ReceiveSupply,
        inventory_pb2.ReceiveSupplyRequest(request_id=uid("rcv"), supply_id=supply_id, quantity=1),
        Code.INVALID_ARGUMENT,
    )
    assert failure.fields == ["quantity"]
    # and the movement path names its own element's field
    failure = expect_error(
        api.inventory.AdjustStock,
        inventory_pb2.AdjustStockRequest(
            request_id=uid("adj"), movements=[movement(sku, node_id, Movement.RETURN, 1)]),
        Code.INVALID_ARGUMENT,
    )
    assert failure.fields == ["movements[0].quantity"]
