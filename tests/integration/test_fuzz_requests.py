"""Generated requests against a live atpd: no input crashes it, every refusal is a documented
status with its details, and a refused call changes nothing (docs/contract.md, Errors).

Requests are built from the protos' descriptors, field by field: ids drawn from a small pool
of records the server holds (so that many requests reach deep into the ledger) mixed with
empty, over-long, non-printable and random strings; integers at and around every limit;
unknown enum values; invalid dates and timestamps. Time-dependent values stay far from "now"
(TTLs of an hour or more, expiries hours ahead) so no record expires while a test compares.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory, timestamp_pb2
from google.rpc import error_details_pb2
from google.type import date_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from atp.persistence.verify import verify
from atp.v1 import (
    availability_pb2,
    availability_pb2_grpc,
    inventory_pb2,
    inventory_pb2_grpc,
    reservations_pb2,
    reservations_pb2_grpc,
)
from tests.integration.helpers import Api, pb_date
from tests.support.atpd import AtpdProcess

FieldDescriptor = pb_descriptor.FieldDescriptor
Code = grpc.StatusCode

NODES = ("fz-n1", "fz-n2")
SKUS = ("fz-s1", "fz-s2")
IDS = (*NODES, *SKUS, "fz-r1", "fz-r2", "fz-h1", "fz-sup1", "l1", "l2", "region-a", "region-b")
# What a refusal may be, and the detail each must carry (docs/contract.md, Errors).
REFUSALS = {
    Code.INVALID_ARGUMENT: error_details_pb2.BadRequest,
    Code.NOT_FOUND: error_details_pb2.ResourceInfo,
    Code.FAILED_PRECONDITION: error_details_pb2.ErrorInfo,
    Code.ALREADY_EXISTS: None,
    Code.RESOURCE_EXHAUSTED: None,
}
INT_LIMITS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
}
# Ids the seeded server holds, by the ending of the field's name.
POOLS = {
    "sku": SKUS, "skus": SKUS, "node_id": NODES, "node_ids": NODES,
    "reservation_id": ("fz-r1", "fz-r2"), "hold_id": ("fz-h1",), "supply_id": ("fz-sup1",),
    "line_id": ("l1", "l2", "l3"), "region": ("region-a", "region-b"),
}
EDGE_INTS = (0, 1, 2, 3, 5, 7, 100, 500, 501, 1000, 1001, 10**12, 10**12 + 1, -1, -(10**12))
MAX_DEPTH = 3

# ----- requests from descriptors ---------------------------------------------------------------


def strings(field: pb_descriptor.FieldDescriptor) -> st.SearchStrategy[str]:
    """Mostly ids the server knows for this field (or fresh ones), sometimes hostile ones."""
    known = next((pool for suffix, pool in POOLS.items() if field.name.endswith(suffix)), IDS)
    fresh = st.text("abcxyz-0123", min_size=1, max_size=8).map(lambda text: f"fz-{text}")
    hostile = st.one_of(st.sampled_from(["", " ", "x" * 129, "é" * 65, "a\x00b", "\n"]),
                        st.text(max_size=12))
    return st.one_of(st.sampled_from(known), st.sampled_from(known), fresh, hostile)


def integers(field: pb_descriptor.FieldDescriptor) -> st.SearchStrategy[int]:
    low, high = INT_LIMITS.get(field.type, INT_LIMITS[FieldDescriptor.TYPE_INT64])
    if "ttl" in field.name:  # short TTLs would expire records while a test compares
        return st.sampled_from([0, 3600, -1, 7 * 86400, 7 * 86400 + 1, high])
    edges = [value for value in (*EDGE_INTS, low, high) if low <= value <= high]
    small = st.integers(max(low, 1), min(high, 5))
    return st.one_of(small, small, st.sampled_from(edges), st.integers(max(low, -3), min(high, 20)))


def dates() -> st.SearchStrategy[Any]:
    today = datetime.datetime.now(datetime.UTC).date()
    near = st.integers(-3, 40).map(lambda days: pb_date(today + datetime.timedelta(days=days)))
    odd = st.tuples(st.sampled_from([0, 1, 2026, 9999, 10000, -1]), st.integers(-1, 13),
                    st.integers(-1, 32))
    return st.one_of(near, odd.map(lambda ymd: _date_message(*ymd)))


def _date_message(year: int, month: int, day: int) -> date_pb2.Date:
    return date_pb2.Date(year=year, month=month, day=day)


def timestamp_fields() -> st.SearchStrategy[tuple[int, int]]:
    now = int(time.time())
    seconds = st.sampled_from([now + 7200, now + 3 * 86400, 0, -1, -62135596801,
                               253402300800, 2**62])
    return st.tuples(seconds, st.sampled_from([0, 999_999_999, 10**9, -1]))


def messages(descriptor: pb_descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """A message of this type with a random subset of its fields set to random values."""
    if descriptor.full_name == "google.type.Date":
        return dates()
    if descriptor.full_name == "google.protobuf.Timestamp":
        return timestamp_fields().map(lambda sn: timestamp_pb2.Timestamp(seconds=sn[0], nanos=sn[1]))
    fields = [field for field in descriptor.fields if depth < MAX_DEPTH
              or field.type != FieldDescriptor.TYPE_MESSAGE]
    values = {field.name: st.one_of(field_values(field, depth), field_values(field, depth), st.none())
              for field in fields}
    return st.fixed_dictionaries(values).map(lambda chosen: _build(descriptor, chosen))


def field_values(field: pb_descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    single = scalar_values(field, depth)
    if field.is_repeated:
        return st.lists(single, max_size=3)
    return single


def scalar_values(field: pb_descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    if field.type == FieldDescriptor.TYPE_STRING:
        return strings(field)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([value.number for value in field.enum_type.values] + [99, -5])
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    return integers(field)


def _build(descriptor: pb_descriptor.Descriptor, chosen: dict[str, Any]) -> Any:
    message = message_factory.GetMessageClass(descriptor)()
    for name, value in chosen.items():
        if value is None:
            continue
        field = descriptor.fields_by_name[name]
        if field.is_repeated:
            getattr(message, name).extend(value)  # copies messages, appends scalars
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


# ----- the RPCs under test ---------------------------------------------------------------------

SERVICES = {
    "Inventory": (inventory_pb2, inventory_pb2_grpc.InventoryStub),
    "Availability": (availability_pb2, availability_pb2_grpc.AvailabilityStub),
    "Reservations": (reservations_pb2, reservations_pb2_grpc.ReservationsStub),
}


def unary_methods() -> list[tuple[str, str, pb_descriptor.Descriptor]]:
    methods = []
    for service_name, (module, _) in SERVICES.items():
        service = module.DESCRIPTOR.services_by_name[service_name]
        for method in service.methods:
            if not method.client_streaming and not method.server_streaming:
                methods.append((service_name, method.name, method.input_type))
    return methods


UNARY = unary_methods()


def a_unary_call() -> st.SearchStrategy[tuple[str, str, Any]]:
    return st.sampled_from(UNARY).flatmap(
        lambda method: messages(method[2]).map(lambda request: (method[0], method[1], request))
    )


# ----- the server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, gateways: int,
           ) -> Iterator[tuple[AtpdProcess, Api]]:
    """An atpd of its own (the fuzz changes shared records), seeded with the pool's ids."""
    server = AtpdProcess(tmp_path_factory.mktemp("fuzz") / "data", gateways=gateways).start()
    api = Api(server.channel())
    try:
        _seed(api)
        yield server, api
    finally:
        api.close()
        if server.process is not None:
            server.stop()


def _seed(api: Api) -> None:
    for index, node_id in enumerate(NODES):
        node = inventory_pb2.UpsertNodeRequest().node
        node.node_id, node.region, node.handling_days = node_id, f"region-{'ab'[index]}", index
        node.lanes.add(region="region-a", transit_days=1 + index, cost=1 + index)
        api.inventory.UpsertNode(inventory_pb2.UpsertNodeRequest(node=node))
    movements = [inventory_pb2.StockMovement(sku=sku, node_id=node_id, quantity=50,
                                             type=inventory_pb2.StockMovement.RECEIPT)
                 for sku in SKUS for node_id in NODES]
    api.inventory.AdjustStock(inventory_pb2.AdjustStockRequest(request_id="fz-seed", movements=movements))
    today = datetime.datetime.now(datetime.UTC).date()
    supply = inventory_pb2.UpsertSupplyRequest().supply
    supply.supply_id, supply.sku, supply.node_id, supply.quantity = "fz-sup1", SKUS[0], NODES[0], 20
    supply.expected_date.CopyFrom(pb_date(today + datetime.timedelta(days=5)))
    api.inventory.UpsertSupply(inventory_pb2.UpsertSupplyRequest(supply=supply))
    hold = inventory_pb2.PlaceHoldRequest().hold
    hold.hold_id, hold.sku, hold.node_id, hold.quantity = "fz-h1", SKUS[1], NODES[1], 3
    api.inventory.PlaceHold(inventory_pb2.PlaceHoldRequest(hold=hold))
    for reservation_id, sku in (("fz-r1", SKUS[0]), ("fz-r2", SKUS[1])):
        request = reservations_pb2.ReserveRequest(reservation_id=reservation_id, ttl_seconds=3600)
        request.lines.add(line_id="l1", sku=sku, quantity=2, node_id=NODES[0])
        api.reservations.Reserve(request)


def snapshot(api: Api) -> tuple[bytes, ...]:
    """Everything a call could change, as the public reads show it (deterministic bytes).
    Unlike helpers.snapshot (per SKU), the lists are unfiltered: generated calls make
    records under fresh ids too."""
    reads = (
        api.inventory.ListNodes(inventory_pb2.ListNodesRequest()),
        api.availability.GetAvailability(
            availability_pb2.GetAvailabilityRequest(skus=SKUS, include_timeline=True)),
        api.inventory.ListSupply(inventory_pb2.ListSupplyRequest(include_closed=True, page_size=1000)),
        api.inventory.ListHolds(inventory_pb2.ListHoldsRequest(page_size=1000)),
        api.reservations.ListReservations(reservations_pb2.ListReservationsRequest(page_size=1000)),
    )
    return tuple(read.SerializeToString(deterministic=True) for read in reads)


def check_refusal(error: grpc.RpcError, what: str) -> None:
    code = error.code()
    assert code in REFUSALS, f"{what}: undocumented status {code}: {error.details()}"
    assert error.details(), f"{what}: {code} without a message"
    detail_type = REFUSALS[code]
    if detail_type is None:
        return
    status = rpc_status.from_call(error)
    assert status is not None, f"{what}: {code} without google.rpc.Status details"
    assert any(detail.Is(detail_type.DESCRIPTOR) for detail in status.details), (
        f"{what}: {code} lacks {detail_type.DESCRIPTOR.name}: {list(status.details)}"
    )


# ----- the tests -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(call=a_unary_call())
def test_every_unary_rpc_refuses_bad_input_cleanly_and_changes_nothing(
    fuzzed: tuple[AtpdProcess, Api], call: tuple[str, str, Any]
) -> None:
    _, api = fuzzed
    service, method, request = call
    stub = {"Inventory": api.inventory, "Availability": api.availability,
            "Reservations": api.reservations}[service]
    before, day_before = snapshot(api), datetime.datetime.now(datetime.UTC).date()
    try:
        getattr(stub, method)(request, timeout=30)
        event(f"{method} OK")
    except grpc.RpcError as error:
        event(f"{method} {error.code().name}")
        check_refusal(error, f"{method}({request})")
        if datetime.datetime.now(datetime.UTC).date() == day_before:  # days move ATP
            assert snapshot(api) == before, f"refused {method} changed the ledger: {request}"


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(requests=st.lists(messages(reservations_pb2.ReserveRequest.DESCRIPTOR), min_size=1, max_size=4))
def test_reserve_stream_answers_every_generated_message_in_order(
    fuzzed: tuple[AtpdProcess, Api], requests: list[Any]
) -> None:
    _, api = fuzzed
    results = list(api.reservations.ReserveStream(iter(requests), timeout=30))
    assert [result.reservation_id for result in results] == [r.reservation_id for r in requests]
    for request, result in zip(requests, results):
        if result.HasField("status"):
            code = Code(next(c for c in Code if c.value[0] == result.status.code))
            assert code in REFUSALS, f"undocumented item status {code} for {request}"
            assert result.status.message and result.reason, result
        else:
            assert result.reservation.reservation_id == request.reservation_id


def test_after_the_fuzz_the_server_serves_and_its_store_is_consistent(
    fuzzed: tuple[AtpdProcess, Api],
) -> None:
    """Runs after the fuzz tests (same module, file order): a clean stop, an offline check of
    every stored record, a restart that reads the same."""
    server, api = fuzzed
    health = health_pb2_grpc.HealthStub(api.channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    before = snapshot(api)
    api.close()
    assert server.stop() == 0, f"atpd did not stop cleanly; see {server.log_path}"
    assert verify(server.data_dir) == []
    server.start()
    restarted = Api(server.channel())
    try:
        assert snapshot(restarted) == before, "the restarted server reads differently"
    finally:
        restarted.close()
