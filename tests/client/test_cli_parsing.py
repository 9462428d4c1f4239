"""atpctl in-process against a fake atpd: parsing, tables, --json, error lines, exit codes."""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from google.type import date_pb2
from grpc_health.v1 import health_pb2

import atp.client
from atp import cli
from atp.cli.app import connection_hint
from atp.v1 import availability_pb2, common_pb2, inventory_pb2, reservations_pb2

from . import FakeAtpd, abort_with, fake_atpd, unused_target

__all__ = ["fake_atpd"]  # The fixture is used by name.


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atp.client, "backoff_first_s", 0.0)


def run(
    capsys: pytest.CaptureFixture[str], fake: FakeAtpd | None, *arguments: str
) -> tuple[int, str, str]:
    """Runs atpctl against `fake`; returns the exit code, stdout and stderr."""
    target = ["--target", fake.target] if fake is not None else []
    exit_code = cli.main([*target, *arguments])
    captured = capsys.readouterr()
    return exit_code, captured.out, captured.err


def availability_answer() -> availability_pb2.GetAvailabilityResponse:
    return availability_pb2.GetAvailabilityResponse(
        positions=[
            common_pb2.Position(sku="A", node_id="DC1", on_hand=120, reserved=20, available=100),
            common_pb2.Position(
                sku="A",
                node_id="STORE-7",
                on_hand=5,
                held=5,
                short=True,
                timeline=[
                    common_pb2.AtpBucket(
                        date=date_pb2.Date(year=2026, month=3, day=1), available=-2
                    )
                ],
            ),
        ],
        totals=[availability_pb2.NetworkAvailability(sku="A", on_hand=125, available=100)],
    )


def reservation_answer(request: Any = None, context: Any = None) -> common_pb2.Reservation:
    return common_pb2.Reservation(
        reservation_id="o1",
        state=common_pb2.Reservation.HELD,
        destination_region="EAST",
        promise_date=date_pb2.Date(year=2026, month=3, day=4),
        lines=[
            common_pb2.ReservationLine(
                line_id="l1",
                sku="A",
                node_id="DC1",
                quantity=5,
                ship_date=date_pb2.Date(year=2026, month=3, day=2),
            )
        ],
    )


# ---------------------------------------------------------------------------------------------
# Argument parsing


def test_reservation_line_with_node_and_ship_date() -> None:
    assert cli.reservation_line("l1:SKU-9:5@DC1/2026-03-01") == {
        "line_id": "l1",
        "sku": "SKU-9",
        "quantity": 5,
        "node_id": "DC1",
        "ship_date": datetime.date(2026, 3, 1),
    }


def test_reservation_line_without_node_is_left_to_sourcing() -> None:
    assert cli.reservation_line("l2:B:1") == {"line_id": "l2", "sku": "B", "quantity": 1}
    assert cli.reservation_line("l3:B:2/2026-12-24")["ship_date"] == datetime.date(2026, 12, 24)


@pytest.mark.parametrize(
    "text", ["l1:A", "l1:A:0", "l1:A:-3", "l1:A:x@DC1", "l1:A:2@DC1/2026-13-01", ":A:2", "l1:A:2@"]
)
def test_malformed_reservation_lines_are_rejected(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli.reservation_line(text)


def test_lanes_and_line_quantities() -> None:
    assert cli.lane("EAST:2") == {"region": "EAST", "transit_days": 2, "cost": 0}
    assert cli.lane("WEST:3:40") == {"region": "WEST", "transit_days": 3, "cost": 40}
    assert cli.line_quantity("l1=3") == {"line_id": "l1", "quantity": 3}
    for bad in ("EAST", "EAST:x", "EAST:1:2:3"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.lane(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        cli.line_quantity("l1=0")


def test_help_exits_zero_with_one_line_descriptions(capsys: pytest.CaptureFixture[str]) -> None:
    exit_code, out, _ = run(capsys, None, "--help")
    assert exit_code == 0
    assert "reserve order lines atomically (all or none)" in out
    exit_code, out, _ = run(capsys, None, "stock", "--help")
    assert exit_code == 0
    assert "book a cycle count" in out


@pytest.mark.parametrize(
    "arguments",
    [
        [],
        ["stock"],
        ["nodes", "explode"],
        ["reserve", "o1"],
        ["reserve", "o1", "--line", "l1:A:0"],
        ["stock", "adjust", "--sku", "A", "--node", "DC1", "--type", "SALE", "--quantity", "1"],
        ["supply", "upsert", "--id", "p", "--sku", "A", "--node", "N", "--quantity", "1",
         "--expected", "tomorrow"],
        ["--timeout", "-1", "health"],
    ],
)  # fmt: skip
def test_usage_errors_exit_two(capsys: pytest.CaptureFixture[str], arguments: list[str]) -> None:
    exit_code, out, err = run(capsys, None, *arguments)
    assert exit_code == 2
    assert out == ""
    assert "error:" in err and "Traceback" not in err


def test_target_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATP_TARGET", "atpd.internal:6000")
    assert cli.build_parser().parse_args(["health"]).target == "atpd.internal:6000"
    monkeypatch.delenv("ATP_TARGET")
    assert cli.build_parser().parse_args(["health"]).target == "127.0.0.1:50051"


def test_global_options_may_follow_the_command() -> None:
    arguments = cli.build_parser().parse_args(
        ["--timeout", "2", "stock", "get", "A", "--json", "--target", "h:1"]
    )
    assert (arguments.json, arguments.target, arguments.timeout) == (True, "h:1", 2.0)
    arguments = cli.build_parser().parse_args(["--json", "--target", "h:2", "stock", "get", "A"])
    assert (arguments.json, arguments.target) == (True, "h:2")


# ---------------------------------------------------------------------------------------------
# Tables and --json


def test_format_table_aligns_text_left_and_integers_right() -> None:
    table = cli.format_table(
        ("NODE", "AVAILABLE", "SHORT"), [("DC1", 5, False), ("STORE-7", 120, True)]
    )
    assert table.splitlines() == [
        "NODE     AVAILABLE  SHORT",
        "DC1              5  no",
        "STORE-7        120  yes",
    ]
    assert cli.format_table(("NODE",), []) == "NODE\n(none)"


def test_stock_get_prints_positions_and_the_network_total(
    fake_atpd: FakeAtpd, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_atpd.answer("GetAvailability", availability_answer())

    exit_code, out, err = run(capsys, fake_atpd, "stock", "get", "A", "--node", "DC1", "--timeline")

    assert (exit_code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "SKU", "NODE", "ON_HAND", "ALLOCATED", "RESERVED", "HELD", "SAFETY_STOCK", "INBOUND",
        "AVAILABLE", "SHORT",
    ]  # fmt: skip
    assert lines[1].split() == ["A", "DC1", "120", "0", "20", "0", "0", "0", "100", "no"]
    assert lines[2].split() == ["A", "STORE-7", "5", "0", "0", "5", "0", "0", "0", "yes"]
    assert lines[3].split() == ["A", "(network)", "125", "0", "0", "0", "0", "0", "100"]
    assert "2026-03-01" in out and "-2" in out
    (request,) = fake_atpd.requests("GetAvailability")
    assert list(request.skus) == ["A"] and list(request.node_ids) == ["DC1"]
    assert request.include_timeline


def test_json_prints_one_document_with_proto_field_names(
    fake_atpd: FakeAtpd, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = availability_answer()
    fake_atpd.answer("GetAvailability", answer)

    exit_code, out, _ = run(capsys, fake_atpd, "stock", "get", "A", "--json")

    document = json.loads(out)
    assert exit_code == 0
    assert document["positions"][0]["node_id"] == "DC1"
    assert document["positions"][0]["on_hand"] == "120"  # int64 as the proto JSON mapping says
    assert document["positions"][0]["allocated"] == "0"  # zeros are printed, not omitted
    assert json_format.ParseDict(document, availability_pb2.GetAvailabilityResponse()) == answer


def test_nodes_upsert_sends_lanes_and_prints_the_node(
    fake_atpd: FakeAtpd, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_atpd.answer("UpsertNode", lambda request, context: request.node)

    exit_code, out, _ = run(
        capsys, fake_atpd, "nodes", "upsert", "DC1", "--kind", "dc", "--region", "EAST",
        "--handling-days", "1", "--lane", "EAST:1", "--lane", "WEST:3:40",
    )  # fmt: skip

    (request,) = fake_atpd.requests("UpsertNode")
    assert exit_code == 0
    assert request.node.active and request.node.handling_days == 1
    assert [lane.region for lane in request.node.lanes] == ["EAST", "WEST"]
    assert request.node.lanes[1].cost == 40
    assert out.splitlines()[1].split() == ["DC1", "dc", "EAST", "yes", "1", "EAST:1,", "WEST:3:40"]


def test_stock_movements_send_the_right_types(
    fake_atpd: FakeAtpd, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_atpd.answer(
        "AdjustStock",
        inventory_pb2.AdjustStockResponse(positions=[common_pb2.Position(sku="A", node_id="DC1")]),
    )
    base = ["--sku", "A", "--quantity", "4"]

    assert run(capsys, fake_atpd, "stock", "adjust", *base, "--node", "DC1", "--type", "damage",
               "--reason", "forklift", "--request-id", "r-7")[0] == 0  # fmt: skip
    assert run(capsys, fake_atpd, "stock", "count", *base, "--node", "DC1")[0] == 0
    assert run(capsys, fake_atpd, "stock", "transfer", *base, "--from", "DC1", "--to", "S1")[0] == 0

    damage, count, transfer = (
        request.movements[0] for request in fake_atpd.requests("AdjustStock")
    )
    assert damage.type == inventory_pb2.StockMovement.DAMAGE and damage.reason == "forklift"
    assert fake_atpd.requests("AdjustStock")[0].request_id == "r-7"
    assert count.type == inventory_pb2.StockMovement.CYCLE_COUNT and count.quantity == 4
    assert transfer.type == inventory_pb2.StockMovement.TRANSFER
    assert (transfer.node_id, transfer.to_node_id) == ("DC1", "S1")


def test_reserve_sends_lines_and_policy_and_prints_the_reservation(
    fake_atpd: FakeAtpd, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_atpd.answer("Reserve", reservation_answer)

    exit_code, out, _ = run(
        capsys, fake_atpd, "reserve", "o1", "--line", "l1:A:5@DC1/2026-03-02", "--line", "l2:B:1",
        "--region", "EAST", "--ttl", "600", "--partial", "--priority", "3",
    )  # fmt: skip

    (request,) = fake_atpd.requests("Reserve")
    assert exit_code == 0
    assert request.lines[0].node_id == "DC1"
    assert request.lines[0].ship_date == date_pb2.Date(year=2026, month=3, day=2)
    assert request.lines[1].node_id == "" and not request.lines[1].HasField("ship_date")
    assert request.policy.allow_partial and request.ttl_seconds == 600 and request.priority == 3
    assert "HELD" in out and "2026-03-04" in out
    assert any(line.split()[:4] == ["l1", "A", "DC1", "5"] for line in out.splitlines())


def test_promise_prints_allocations_backorders_and_explanations(
    fake_atpd: FakeAtpd, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_atpd.answer(
        "Promise",
        availability_pb2.PromiseResponse(
            promise_date=date_pb2.Date(year=2026, month=3, day=5),
            lines=[
                availability_pb2.LinePromise(
                    line_id="l1",
                    allocations=[
                        availability_pb2.Allocation(
                            node_id="DC1",
                            quantity=3,
                            ship_date=date_pb2.Date(year=2026, month=3, day=3),
                            delivery_date=date_pb2.Date(year=2026, month=3, day=5),
                        )
                    ],
                    backordered_quantity=2,
                    candidates=[
                        availability_pb2.CandidateExplanation(node_id="DC2", outcome="NO_LANE",
                                                              detail="no lane to EAST")
                    ],
                )
            ],
        ),
    )

    exit_code, out, _ = run(
        capsys, fake_atpd, "promise", "--line", "l1:A:5", "--region", "EAST", "--partial",
        "--cheapest", "--max-nodes", "2", "--explain",
    )  # fmt: skip

    (request,) = fake_atpd.requests("Promise")
    assert exit_code == 0
    assert request.policy.objective == common_pb2.FulfillmentPolicy.CHEAPEST
    assert request.policy.max_nodes == 2 and request.explain
    assert "promise date: 2026-03-05" in out and "complete: no" in out
    assert "no date" in out and "NO_LANE" in out and "no lane to EAST" in out


def test_reservation_list_pages_up_to_the_limit(
    fake_atpd: FakeAtpd, capsys: pytest.CaptureFixture[str]
) -> None:
    def page(request: Any, context: Any) -> Any:
        start = int(request.page_token or 0)
        identifiers = [f"o{index}" for index in range(start, start + request.page_size)]
        return reservations_pb2.ListReservationsResponse(
            reservations=[common_pb2.Reservation(reservation_id=item) for item in identifiers],
            next_page_token=str(start + request.page_size),
        )

    fake_atpd.answer("ListReservations", page)

    exit_code, out, _ = run(
        capsys, fake_atpd, "reservation", "list", "--state", "held", "--at-risk", "--limit", "3"
    )

    (request,) = fake_atpd.requests("ListReservations")
    assert exit_code == 0
    assert request.state == common_pb2.Reservation.HELD and request.at_risk
    assert request.page_size == 3
    assert [line.split()[0] for line in out.splitlines()[1:4]] == ["o0", "o1", "o2"]
    assert "raise --limit" in out


def test_release_sends_line_quantities(
    fake_atpd: FakeAtpd, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_atpd.answer("Release", reservation_answer)

    exit_code, _, _ = run(capsys, fake_atpd, "reservation", "release", "o1", "--line", "l1=2")

    (request,) = fake_atpd.requests("Release")
    assert exit_code == 0
    assert list(request.lines) == [common_pb2.LineQuantity(line_id="l1", quantity=2)]
    assert len(request.request_id) == 32


def test_hold_place_with_expiry_and_supply_list_with_pages(
    fake_atpd: FakeAtpd, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_atpd.answer("PlaceHold", lambda request, context: request.hold)
    pages = {
        "": inventory_pb2.ListSupplyResponse(
            supplies=[common_pb2.Supply(supply_id="po1", quantity=4)], next_page_token="next"
        ),
        "next": inventory_pb2.ListSupplyResponse(supplies=[common_pb2.Supply(supply_id="po2")]),
    }
    fake_atpd.answer("ListSupply", lambda request, context: pages[request.page_token])

    hold_exit, hold_out, _ = run(
        capsys, fake_atpd, "hold", "place", "--id", "h1", "--sku", "A", "--node", "DC1",
        "--quantity", "2", "--expires-in", "3600", "--force",
    )  # fmt: skip
    supply_exit, supply_out, _ = run(capsys, fake_atpd, "--json", "supply", "list", "--all")

    (hold_request,) = fake_atpd.requests("PlaceHold")
    assert hold_exit == 0 and hold_request.hold.force
    assert hold_request.hold.HasField("expire_time")
    assert hold_out.splitlines()[1].split()[:5] == ["h1", "A", "DC1", "2", "yes"]
    assert supply_exit == 0
    assert [item["supply_id"] for item in json.loads(supply_out)["supplies"]] == ["po1", "po2"]
    assert all(request.include_closed for request in fake_atpd.requests("ListSupply"))


# ---------------------------------------------------------------------------------------------
# Errors and exit codes


def test_server_error_is_one_line_on_stderr_with_exit_one(
    fake_atpd: FakeAtpd, capsys: pytest.CaptureFixture[str]
) -> None:
    def insufficient(request: Any, context: grpc.ServicerContext) -> Any:
        abort_with(
            context,
            grpc.StatusCode.FAILED_PRECONDITION,
            "line l1 (sku A at DC1): requested 5, available 2",
            error_details_pb2.ErrorInfo(reason="INSUFFICIENT_AVAILABILITY"),
        )

    fake_atpd.answer("Reserve", insufficient)

    exit_code, out, err = run(capsys, fake_atpd, "reserve", "o1", "--line", "l1:A:5@DC1")

    assert (exit_code, out) == (1, "")
    assert err == (
        "error: FAILED_PRECONDITION INSUFFICIENT_AVAILABILITY: "
        "line l1 (sku A at DC1): requested 5, available 2\n"
    )


def test_unimplemented_auto_sourcing_is_reported_cleanly(
    fake_atpd: FakeAtpd, capsys: pytest.CaptureFixture[str]
) -> None:
    def not_yet(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "lines without a node need promising")

    fake_atpd.answer("Reserve", not_yet)

    exit_code, _, err = run(capsys, fake_atpd, "reserve", "o1", "--line", "l1:A:5")

    assert exit_code == 1
    assert err == "error: UNIMPLEMENTED: lines without a node need promising\n"


def test_unreachable_server_is_reported_with_its_target(capsys: pytest.CaptureFixture[str]) -> None:
    target = unused_target()

    exit_code, out, err = run(capsys, None, "--target", target, "nodes", "list")

    assert (exit_code, out) == (1, "")
    assert err == (f"error: cannot reach atpd at {target} (UNAVAILABLE): nothing listens "
                   "there; is atpd running, and is --target its --listen address?\n")


# gRPC's own words for failed connections, as seen from a real atpd (plaintext, TLS and
# mutual TLS), and what atpctl makes of them.
_REFUSED = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
            "Failed to connect to remote host: Connection refused")
_CLOSED = ("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:5: "
           "Socket closed")
_UNTRUSTED = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:5: Tls "
              "handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
              "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local "
              "issuer certificate: OK")
_WRONG_NAME = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:5: "
               "Custom verification check failed with error: UNAUTHENTICATED: Hostname "
               "Verification Check failed.")


@pytest.mark.parametrize(("message", "over_tls", "says"), [
    (_REFUSED, False, "nothing listens there"),
    (_REFUSED, True, "nothing listens there"),
    (_CLOSED, False, "if atpd serves TLS (--tls-cert), connect with --tls-ca"),
    (_CLOSED, True, "give yours with --tls-cert and --tls-key"),
    (_UNTRUSTED, True, "give the CA that signed it with --tls-ca"),
    (_WRONG_NAME, True, "--tls-server-name"),
    ("failed to connect to all addresses; last error: something new", False, ""),
])
def test_a_failed_connection_says_what_to_try(message: str, over_tls: bool, says: str) -> None:
    hint = connection_hint(message, over_tls)
    assert (says in hint) if says else hint == ""


def test_value_out_of_range_is_a_usage_error_without_traceback(
    fake_atpd: FakeAtpd, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code, _, err = run(
        capsys, fake_atpd, "promise", "--line", "l1:A:1", "--region", "R", "--priority", str(2**40)
    )
    assert exit_code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert fake_atpd.requests("Promise") == []


@pytest.mark.parametrize(
    ("status", "expected_exit_code"),
    [(health_pb2.HealthCheckResponse.SERVING, 0), (health_pb2.HealthCheckResponse.NOT_SERVING, 1)],
)
def test_health_exit_code_follows_the_status(
    fake_atpd: FakeAtpd,
    capsys: pytest.CaptureFixture[str],
    status: int,
    expected_exit_code: int,
) -> None:
    fake_atpd.answer("Check", health_pb2.HealthCheckResponse(status=status))

    exit_code, out, _ = run(capsys, fake_atpd, "health")
    json_exit_code, json_out, _ = run(capsys, fake_atpd, "health", "--json")

    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    assert (exit_code, out) == (expected_exit_code, f"{name}\n")
    assert (json_exit_code, json.loads(json_out)) == (expected_exit_code, {"status": name})


# ---------------------------------------------------------------------------------------------
# Offline database commands (the store's functions are replaced: only the CLI is under test)


def test_db_verify_reports_problems_with_exit_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    from atp.persistence import verify

    monkeypatch.setattr(verify, "verify", lambda data_dir: ["position A@DC1 is negative"])
    exit_code, out, _ = run(capsys, None, "db", "verify", "--data-dir", str(tmp_path))
    assert (exit_code, out) == (1, "problem: position A@DC1 is negative\n")

    monkeypatch.setattr(verify, "verify", lambda data_dir: [])
    exit_code, out, _ = run(capsys, None, "--json", "db", "verify", "--data-dir", str(tmp_path))
    assert (exit_code, json.loads(out)) == (0, {"ok": True, "problems": []})


def test_db_stat_and_backup_print_what_the_store_returns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    from atp.store import offline

    monkeypatch.setattr(offline, "stat", lambda data_dir: {"map_size": 1024, "entries": 7})
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(offline, "backup", lambda data_dir, dest: calls.append((data_dir, dest)))

    stat_exit, stat_out, _ = run(capsys, None, "db", "stat", "--data-dir", str(tmp_path))
    backup_exit, backup_out, _ = run(
        capsys, None, "db", "backup", "--data-dir", str(tmp_path), str(tmp_path / "copy")
    )

    assert stat_exit == 0 and stat_out.splitlines()[1].split() == ["map_size", "1024"]
    assert backup_exit == 0 and calls == [(str(tmp_path), str(tmp_path / "copy"))]
    assert backup_out == f"backup written to {tmp_path / 'copy'}\n"


def test_db_store_error_is_one_line_with_exit_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    from atp.store import StoreError, offline

    def refuse(data_dir: str) -> Any:
        raise StoreError(f"{data_dir}: not an atp data directory")

    monkeypatch.setattr(offline, "stat", refuse)

    exit_code, out, err = run(capsys, None, "db", "stat", "--data-dir", str(tmp_path))

    assert (exit_code, out) == (1, "")
    assert err == f"error: StoreError: {tmp_path}: not an atp data directory\n"
