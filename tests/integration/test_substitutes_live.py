"""Substitute SKUs over a real atpd (docs/contract.md, "Substitutes"): Promise offers and
explains, Reserve with allow_substitution holds the substitute (kept across kill -9, announced
with substitute_for), bad substitutes are INVALID_ARGUMENT, and atpctl's options and output."""

from __future__ import annotations

import datetime
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from atp.client import AtpError, Client
from atp.v1 import events_pb2, events_pb2_grpc
from tests.integration.helpers import uid
from tests.support.atpd import AtpdProcess

pytestmark = pytest.mark.integration

_SCRIPT = Path(sys.executable).with_name("atpctl")
ATPCTL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "atp.cli"]


@pytest.fixture(scope="module")
def atpd(tmp_path_factory: pytest.TempPathFactory, gateways: int) -> Iterator[AtpdProcess]:
    """One atpd for the module (its tests use names and ids of their own), one start per
    mode."""
    process = AtpdProcess(tmp_path_factory.mktemp("substitutes") / "data", gateways=gateways)
    try:
        yield process.start()
    finally:
        if process.process is not None:
            process.kill()


def network(client: Client) -> dict[str, str]:
    """Fresh names: N1 delivers to the region in 1 day, N2 in 3. A has 4 units at N1, B 3 at
    N1, C 10 at N2, D 10 at N1."""
    names = {key: uid(key) for key in ("region", "n1", "n2", "A", "B", "C", "D")}
    client.upsert_node(node_id=names["n1"], lanes=[{"region": names["region"],
                                                   "transit_days": 1, "cost": 5}])
    client.upsert_node(node_id=names["n2"], lanes=[{"region": names["region"],
                                                   "transit_days": 3, "cost": 1}])
    client.adjust_stock([
        {"sku": names[sku], "node_id": names[node], "type": "RECEIPT", "quantity": quantity}
        for sku, node, quantity in (("A", "n1", 4), ("B", "n1", 3), ("C", "n2", 10),
                                    ("D", "n1", 10))
    ])
    return names


def test_promise_offers_and_explains_the_first_feasible_substitute(atpd: AtpdProcess) -> None:
    with Client(atpd.target) as client:
        n = network(client)
        line = {"line_id": "l1", "sku": n["A"], "quantity": 10,
                "substitute_skus": [n["B"], "never-stocked", n["C"], n["D"]]}
        response = client.promise([line], n["region"], explain=True)
        (answer,) = response.lines
        assert not response.complete and answer.backordered_quantity == 10
        assert answer.substitute.sku == n["C"]
        assert [(a.node_id, a.quantity) for a in answer.substitute.allocations] == [
            (n["n2"], 10)]
        today = datetime.date.today()
        promise_date = answer.substitute.promise_date
        assert datetime.date(promise_date.year, promise_date.month, promise_date.day) == (
            today + datetime.timedelta(days=3))
        assert answer.substitute.reason == f"only 4 of 10 units of {n['A']} can be promised"
        assert [(s.sku, s.outcome) for s in answer.substitutes] == [
            (n["B"], "INCOMPLETE"), ("never-stocked", "UNKNOWN_SKU"), (n["C"], "OFFERED"),
            (n["D"], "NOT_CONSIDERED")]
        # need_by before C's delivery: C is LATE and D (1 day from N1) is offered.
        soon = today + datetime.timedelta(days=1)
        late = client.promise([{**line, "need_by_date": soon}], n["region"], explain=True)
        assert late.lines[0].substitute.sku == n["D"]
        assert [s.outcome for s in late.lines[0].substitutes][2:] == ["LATE", "OFFERED"]
        # A bad substitute list: INVALID_ARGUMENT naming the field.
        with pytest.raises(AtpError) as caught:
            client.promise([{**line, "substitute_skus": [n["A"]]}], n["region"])
        assert [v.field for v in caught.value.field_violations] == [
            "lines[0].substitute_skus[0]"]


def test_reserve_holds_the_substitute_only_when_allowed_and_keeps_it(
    atpd: AtpdProcess,
) -> None:
    with Client(atpd.target) as client:
        n = network(client)
        line = {"line_id": "l1", "sku": n["A"], "quantity": 10,
                "substitute_skus": [n["B"], n["C"]]}
        with pytest.raises(AtpError) as caught:
            client.reserve("r-no", [line], destination_region=n["region"])
        assert caught.value.reason == "INSUFFICIENT_AVAILABILITY"
        reservation = client.reserve("r-sub", [line], destination_region=n["region"],
                                     allow_substitution=True)
        assert [(x.line_id, x.sku, x.node_id, x.quantity, x.substitute_for)
                for x in reservation.lines] == [("l1", n["C"], n["n2"], 10, n["A"])]
        # A retry is the same reservation; substitution turned off is another request.
        again = client.reserve("r-sub", [line], destination_region=n["region"],
                               allow_substitution=True)
        assert again == reservation
        with pytest.raises(AtpError) as caught:
            client.reserve("r-sub", [line], destination_region=n["region"])
        assert caught.value.code.name == "ALREADY_EXISTS"
        # A line naming a node tries its substitutes there: D at N1.
        at_node = client.reserve("r-node", [{**line, "node_id": n["n1"],
                                             "substitute_skus": [n["C"], n["D"]]}],
                                 allow_substitution=True)
        assert [(x.sku, x.node_id, x.substitute_for) for x in at_node.lines] == [
            (n["D"], n["n1"], n["A"])]
        with grpc_events(atpd) as stub:
            events = list(stub.Watch(events_pb2.WatchRequest(
                types=["RESERVATION_CREATED"], reservation_id="r-sub", stop_at_head=True),
                timeout=30))
        (created,) = events
        (event_line,) = MessageToDict(created.data)["lines"]
        assert event_line["sku"] == n["C"] and event_line["substitute_for"] == n["A"]

    atpd.kill()  # kill -9: what was acknowledged must come back
    atpd.start()
    with Client(atpd.target) as client:
        stored = client.get_reservation("r-sub")
        assert [(x.sku, x.substitute_for) for x in stored.lines] == [(n["C"], n["A"])]
        position = client.get_availability([n["C"]], [n["n2"]]).positions[0]
        assert position.reserved == 10


class grpc_events:
    """An Events stub on its own channel (closed on exit)."""

    def __init__(self, atpd: AtpdProcess) -> None:
        self.channel = atpd.channel()

    def __enter__(self) -> Any:
        return events_pb2_grpc.EventsStub(self.channel)

    def __exit__(self, *exc_info: object) -> None:
        self.channel.close()


def atpctl(target: str, *arguments: str, expect: int = 0) -> str:
    result = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [*ATPCTL, "--target", target, *arguments], capture_output=True, text=True, timeout=60)
    assert result.returncode == expect, (arguments, result.stdout, result.stderr)
    return result.stdout + result.stderr


def test_atpctl_promise_and_reserve_with_substitutes(atpd: AtpdProcess) -> None:
    with Client(atpd.target) as client:
        n = network(client)
    target = atpd.target
    text = atpctl(target, "promise", "--line", f"l1:{n['A']}:10", "--region", n["region"],
                  "--substitute", f"l1={n['B']},{n['C']}", "--explain")
    assert f"{n['C']} (substitute for {n['A']})" in text
    assert "INCOMPLETE" in text and "OFFERED" in text
    text = atpctl(target, "reserve", "r-cli", "--line", f"l1:{n['A']}:10", "--region",
                  n["region"], "--substitute", f"l1={n['B']},{n['C']}", "--allow-substitution")
    assert f"{n['C']} (substitute for {n['A']})" in text
    # A --substitute for a line that is not there is a usage error.
    text = atpctl(target, "promise", "--line", f"l1:{n['A']}:1", "--region", n["region"],
                  "--substitute", f"l9={n['B']}", expect=2)
    assert "no --line has" in text
