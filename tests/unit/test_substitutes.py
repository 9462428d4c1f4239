"""Substitute SKUs (docs/contract.md, "Substitutes") on the Ledger directly, injected clock.

The network: N1 delivers to EU in 1 day (lane cost 5), N2 in 3 days (cost 1). Each test
stocks the SKUs it needs and checks which substitute Promise offers, or Reserve holds, and
why (explain), including that Promise is read-only and a refused Reserve changes nothing.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import pytest

from atp.ledger import Ledger, LedgerConfig, commands, day_of, errors
from atp.ledger.model import Lane, Policy, Reservation
from atp.ledger.promising import OrderLine, OrderPlan, SubstituteOutcome

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()
TODAY = day_of(NOW)
REGION = "EU"
ROOT = Path(__file__).resolve().parents[2]

OFFERED = SubstituteOutcome.OFFERED
INCOMPLETE = SubstituteOutcome.INCOMPLETE
LATE = SubstituteOutcome.LATE
UNKNOWN_SKU = SubstituteOutcome.UNKNOWN_SKU
NOT_CONSIDERED = SubstituteOutcome.NOT_CONSIDERED


def date_after(days: int) -> tuple[int, int, int]:
    value = datetime.date.fromordinal(TODAY + days)
    return (value.year, value.month, value.day)


def iso(days: int) -> str:
    return datetime.date.fromordinal(TODAY + days).isoformat()


def build(stock: dict[tuple[str, str], int]) -> Ledger:
    ledger = Ledger(LedgerConfig())
    ledger.execute(commands.UpsertNode("N1", lanes=(Lane(REGION, 1, 5),)), NOW)
    ledger.execute(commands.UpsertNode("N2", lanes=(Lane(REGION, 3, 1),)), NOW)
    ledger.execute(commands.AdjustStock("seed", tuple(
        commands.Movement(sku, node, "RECEIPT", quantity)
        for (sku, node), quantity in stock.items()
    )), NOW)
    ledger.take_changes()
    return ledger


def state_of(ledger: Ledger) -> dict[str, Any]:
    return {
        "positions": {
            key: (p.on_hand, p.allocated, p.reserved, p.held, dict(p.deltas), sorted(p.lines))
            for key, p in ledger.positions.items()
        },
        "reservations": sorted(ledger.known_reservations()),
        "sequence": ledger.sequence,
    }


def promise(ledger: Ledger, lines: list[OrderLine], policy: Policy | None = None,
            explain: bool = False) -> OrderPlan:
    before = state_of(ledger)
    plan = ledger.promise(lines, REGION, policy or Policy(), 0, NOW, explain=explain)
    assert state_of(ledger) == before  # read-only
    assert not ledger.has_changes
    assert ledger.check_invariants() == []
    return plan


def checks(plan: OrderPlan, index: int = 0) -> list[tuple[str, SubstituteOutcome]]:
    return [(check.sku, check.outcome) for check in plan.lines[index].substitutes]


def held(reservation: Reservation) -> list[tuple[str, str, str, int, str]]:
    return [(line.line_id, line.sku, line.node_id, line.quantity, line.substitute_for)
            for line in reservation.lines]


# ----- Promise ---------------------------------------------------------------------------------


def test_promise_offers_the_first_substitute_that_can_be_promised_in_full() -> None:
    ledger = build({("A", "N1"): 4, ("B", "N1"): 3, ("C", "N2"): 10, ("D", "N1"): 10})
    plan = promise(ledger, [OrderLine("l1", "A", 10, ("B", "C", "D"))], explain=True)
    line = plan.lines[0]
    # The line's own fields still answer for A: the order cannot be promised.
    assert not plan.complete and line.backordered_quantity == 10 and not line.allocations
    offer = line.substitute
    assert offer is not None and offer.sku == "C"
    assert [(a.node_id, a.quantity, a.ship_day - TODAY, a.delivery_day - TODAY)
            for a in offer.allocations] == [("N2", 10, 0, 3)]
    assert offer.promise_day == TODAY + 3
    assert offer.reason == "only 4 of 10 units of A can be promised"
    assert checks(plan) == [("B", INCOMPLETE), ("C", OFFERED), ("D", NOT_CONSIDERED)]
    assert line.substitutes[0].detail == "only 3 of 10 units of B can be promised"
    assert line.substitutes[2].detail == "not considered: C was offered first"


def test_a_primary_that_meets_the_request_gets_no_substitute() -> None:
    ledger = build({("A", "N1"): 10, ("B", "N1"): 10})
    plain = promise(ledger, [OrderLine("l1", "A", 10)])
    plan = promise(ledger, [OrderLine("l1", "A", 10, ("B",))], explain=True)
    assert plan.lines[0].substitute is None
    assert plan.lines[0].allocations == plain.lines[0].allocations
    assert checks(plan) == [("B", NOT_CONSIDERED)]
    assert plan.lines[0].substitutes[0].detail == "not needed: A meets the request"
    assert promise(ledger, [OrderLine("l1", "A", 10, ("B",))]).lines[0].substitutes == []


def test_an_incomplete_primary_under_allow_partial_is_offered_a_substitute() -> None:
    ledger = build({("A", "N1"): 4, ("B", "N1"): 10})
    partial = Policy(allow_partial=True)
    plan = promise(ledger, [OrderLine("l1", "A", 10, ("B",))], partial)
    line = plan.lines[0]
    # The primary's own answer is what it was: 4 units, 6 backordered.
    assert [a.quantity for a in line.allocations] == [4] and line.backordered_quantity == 6
    assert line.substitute is not None and line.substitute.sku == "B"
    assert line.substitute.reason == "only 4 of 10 units of A can be promised"


def test_need_by_a_late_primary_is_offered_a_faster_substitute() -> None:
    ledger = build({("A", "N2"): 10, ("B", "N2"): 10, ("C", "N1"): 10})
    need_by = date_after(2)
    plan = promise(ledger, [OrderLine("l1", "A", 10, ("B", "C"), need_by)], explain=True)
    line = plan.lines[0]
    assert plan.complete and line.allocations[0].delivery_day == TODAY + 3
    assert line.substitute is not None and line.substitute.sku == "C"
    assert line.substitute.promise_day == TODAY + 1
    assert line.substitute.reason == f"A delivers {iso(3)}, after need_by {iso(2)}"
    assert checks(plan) == [("B", LATE), ("C", OFFERED)]
    assert line.substitutes[0].detail == f"B delivers {iso(3)}, after need_by {iso(2)}"


def test_need_by_met_by_the_primary_or_without_substitutes_changes_nothing() -> None:
    ledger = build({("A", "N2"): 10, ("C", "N1"): 10})
    plain = promise(ledger, [OrderLine("l1", "A", 10)])
    on_time = promise(ledger, [OrderLine("l1", "A", 10, ("C",), date_after(3))])
    alone = promise(ledger, [OrderLine("l1", "A", 10, (), date_after(1))])
    for plan in (on_time, alone):
        assert plan.lines[0].substitute is None
        assert plan.lines[0].allocations == plain.lines[0].allocations


def test_unknown_substitutes_are_skipped_not_refused() -> None:
    ledger = build({("A", "N1"): 1, ("B", "N1"): 10})
    plan = promise(ledger, [OrderLine("l1", "A", 5, ("NOPE", "B"))], explain=True)
    assert plan.lines[0].substitute is not None and plan.lines[0].substitute.sku == "B"
    assert checks(plan) == [("NOPE", UNKNOWN_SKU), ("B", OFFERED)]
    assert plan.lines[0].substitutes[0].detail == "NOPE was never stocked"


def test_nothing_feasible_offers_nothing_and_answers_as_without() -> None:
    ledger = build({("A", "N1"): 1, ("B", "N1"): 2})
    plain = promise(ledger, [OrderLine("l1", "A", 5)], explain=True)
    plan = promise(ledger, [OrderLine("l1", "A", 5, ("B", "NOPE"))], explain=True)
    assert plan.lines[0].substitute is None
    assert plan.complete == plain.complete and plan.lines[0].candidates == plain.lines[0].candidates
    assert checks(plan) == [("B", INCOMPLETE), ("NOPE", UNKNOWN_SKU)]


def test_substitutes_see_the_rest_of_the_order_in_place() -> None:
    """l1 takes 6 of B's 10 units; l2 (A short) cannot take B's remaining 4 for its 5."""
    ledger = build({("A", "N1"): 1, ("B", "N1"): 10, ("C", "N1"): 5})
    plan = promise(ledger, [
        OrderLine("l1", "B", 6),
        OrderLine("l2", "A", 5, ("B", "C")),
    ], explain=True)
    assert plan.lines[1].substitute is not None and plan.lines[1].substitute.sku == "C"
    assert checks(plan, 1) == [("B", INCOMPLETE), ("C", OFFERED)]
    # Two lines short of the same SKU: the first offer is in place for the second.
    plan = promise(ledger, [
        OrderLine("l1", "A", 5, ("C",)),
        OrderLine("l2", "A", 5, ("C", "B")),
    ])
    offers = [line.substitute.sku if line.substitute else None for line in plan.lines]
    assert offers == ["C", "B"]


def test_promise_validates_substitutes_and_need_by() -> None:
    ledger = build({("A", "N1"): 1})
    with pytest.raises(errors.InvalidArgument) as caught:
        ledger.promise([OrderLine("l1", "A", 1, ("A", "B", "B", ""), (2026, 2, 30))],
                       REGION, Policy(), 0, NOW)
    fields = {violation.field for violation in caught.value.violations}
    assert fields == {"lines[0].substitute_skus[0]", "lines[0].substitute_skus[2]",
                      "lines[0].substitute_skus[3]", "lines[0].need_by_date"}
    with pytest.raises(errors.InvalidArgument) as caught:
        ledger.promise([OrderLine("l1", "A", 1, tuple(f"S{i}" for i in range(11)))],
                       REGION, Policy(), 0, NOW)
    assert [v.field for v in caught.value.violations] == ["lines[0].substitute_skus"]


def test_the_outcome_tokens_are_the_ones_the_proto_documents() -> None:
    proto = (ROOT / "protos" / "atp" / "v1" / "availability.proto").read_text()
    block = proto[proto.index("message SubstituteExplanation"):]
    block = block[:block.index("string outcome = 2;")]
    documented = set(re.findall(r"\b([A-Z][A-Z_]{3,})\b", block))
    assert documented == {outcome.value for outcome in SubstituteOutcome}
    readme = (ROOT / "README.md").read_text()
    assert all(f"`{outcome.value}`" in readme for outcome in SubstituteOutcome)


# ----- Reserve ---------------------------------------------------------------------------------


def reserve(ledger: Ledger, lines: tuple[commands.LineRequest, ...], allow: bool = True,
            policy: Policy | None = None, reservation_id: str = "r1") -> Reservation:
    result = ledger.execute(commands.Reserve(
        reservation_id, lines, destination_region=REGION, policy=policy or Policy(),
        allow_substitution=allow), NOW)
    assert ledger.check_invariants() == []
    assert isinstance(result, Reservation)
    return result


def test_reserve_takes_a_substitute_only_when_allowed() -> None:
    ledger = build({("A", "N1"): 4, ("B", "N1"): 3, ("C", "N2"): 10})
    line = commands.LineRequest("l1", "A", 10, substitute_skus=("B", "C"))
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, (line,), allow=False)
    reservation = reserve(ledger, (line,))
    assert held(reservation) == [("l1", "C", "N2", 10, "A")]
    assert ledger.positions[("C", "N2")].reserved == 10
    assert ledger.positions[("A", "N1")].reserved == 0
    created = [e for e in ledger.take_changes().events if e.type == "RESERVATION_CREATED"]
    assert created[-1].data["lines"] == [{
        "line_id": "l1", "sku": "C", "node_id": "N2", "quantity": 10,
        "ship_date": iso(0), "backordered": 0, "substitute_for": "A"}]


def test_reserve_holds_the_primary_when_it_meets_the_request() -> None:
    ledger = build({("A", "N1"): 10, ("B", "N1"): 10})
    reservation = reserve(ledger, (commands.LineRequest("l1", "A", 10, substitute_skus=("B",)),))
    assert held(reservation) == [("l1", "A", "N1", 10, "")]
    created = [e for e in ledger.take_changes().events if e.type == "RESERVATION_CREATED"]
    assert "substitute_for" not in created[-1].data["lines"][0]


def test_reserve_need_by_takes_a_faster_substitute() -> None:
    ledger = build({("A", "N2"): 10, ("B", "N1"): 10})
    line = commands.LineRequest("l1", "A", 10, substitute_skus=("B",), need_by_date=date_after(1))
    reservation = reserve(ledger, (line,))
    assert held(reservation) == [("l1", "B", "N1", 10, "A")]
    assert reservation.lines[0].delivery_day == TODAY + 1


def test_a_line_naming_a_node_tries_its_substitutes_at_that_node() -> None:
    ledger = build({("A", "N1"): 2, ("B", "N2"): 10, ("C", "N1"): 10})
    line = commands.LineRequest("l1", "A", 5, node_id="N1", substitute_skus=("B", "NOPE", "C"))
    reservation = reserve(ledger, (line,))
    # B has stock only at N2: not tried there. NOPE was never stocked: skipped.
    assert held(reservation) == [("l1", "C", "N1", 5, "A")]
    # need_by before the node's delivery day: no substitute at N1 can be on time.
    late = commands.LineRequest("l2", "C", 1, node_id="N1", substitute_skus=("A",),
                                need_by_date=date_after(0))
    reservation = reserve(ledger, (late,), reservation_id="r2")
    assert held(reservation) == [("l2", "C", "N1", 1, "")]


def test_a_sourced_line_holds_what_promise_offered() -> None:
    ledger = build({("A", "N1"): 1, ("B", "N1"): 10, ("C", "N2"): 10})
    plan = promise(ledger, [OrderLine("l1", "B", 6), OrderLine("l2", "A", 5, ("B", "C"))])
    offer = plan.lines[1].substitute
    assert offer is not None
    reservation = reserve(ledger, (
        commands.LineRequest("l1", "B", 6),
        commands.LineRequest("l2", "A", 5, substitute_skus=("B", "C")),
    ))
    assert held(reservation) == [("l1", "B", "N1", 6, ""), ("l2", "C", "N2", 5, "A")]
    assert [(a.node_id, a.quantity, a.ship_day, a.delivery_day) for a in offer.allocations] == [
        (line.node_id, line.quantity, line.ship_day, line.delivery_day)
        for line in reservation.lines[1:]]


def test_nothing_feasible_reserves_as_without_substitution() -> None:
    ledger = build({("A", "N1"): 4, ("B", "N1"): 3})
    line = commands.LineRequest("l1", "A", 10, substitute_skus=("B", "NOPE"))
    before = state_of(ledger)
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, (line,))
    assert state_of(ledger) == before
    partial = Policy(allow_partial=True)
    reservation = reserve(ledger, (line,), policy=partial)
    assert held(reservation) == [("l1", "A", "N1", 4, "")]
    assert reservation.lines[0].backordered_quantity == 6


def test_a_refused_reserve_changes_nothing() -> None:
    """l1 (node-named) would take a substitute; l2 cannot be held: nothing is held at all."""
    ledger = build({("A", "N1"): 1, ("B", "N1"): 10, ("D", "N1"): 1})
    before = state_of(ledger)
    with pytest.raises(errors.InsufficientAvailability):
        reserve(ledger, (
            commands.LineRequest("l1", "A", 5, node_id="N1", substitute_skus=("B",)),
            commands.LineRequest("l2", "A", 5, substitute_skus=("B",)),
            commands.LineRequest("l3", "D", 5, substitute_skus=("B",)),
        ))
    assert state_of(ledger) == before
    assert not ledger.take_changes().events


def test_an_idempotent_replay_returns_the_same_reservation() -> None:
    ledger = build({("A", "N1"): 1, ("B", "N1"): 10})
    lines = (commands.LineRequest("l1", "A", 5, substitute_skus=("B",)),)
    first = reserve(ledger, lines)
    again = reserve(ledger, lines)
    assert again is first and held(again) == [("l1", "B", "N1", 5, "A")]
    assert ledger.positions[("B", "N1")].reserved == 5
    # The same id with substitution now off is another request.
    with pytest.raises(errors.AlreadyExists):
        reserve(ledger, lines, allow=False)


def test_a_substitute_line_releases_and_commits_like_any_line() -> None:
    ledger = build({("A", "N1"): 1, ("B", "N1"): 10})
    reserve(ledger, (commands.LineRequest("l1", "A", 5, substitute_skus=("B",)),))
    ledger.execute(commands.Commit("r1", "c1"), NOW)
    assert ledger.positions[("B", "N1")].allocated == 5
    ledger.execute(commands.Release("r1", "x1"), NOW)
    assert ledger.positions[("B", "N1")].allocated == 0
    assert ledger.check_invariants() == []


def test_a_substitute_split_across_nodes_names_the_requested_sku_on_every_part() -> None:
    ledger = build({("A", "N1"): 1, ("B", "N1"): 3, ("B", "N2"): 3})
    reservation = reserve(ledger, (commands.LineRequest("l1", "A", 5, substitute_skus=("B",)),))
    assert sorted(held(reservation)) == [("l1", "B", "N1", 3, "A"), ("l1/2", "B", "N2", 2, "A")]
    assert {line.request_line_of for line in reservation.lines} == {"l1"}


def test_under_allow_partial_a_line_without_a_feasible_substitute_backorders() -> None:
    """l1 takes its substitute; l2's substitutes cannot cover it: l2 backorders its own SKU."""
    ledger = build({("A", "N1"): 1, ("B", "N1"): 5, ("C", "N1"): 2})
    reservation = reserve(ledger, (
        commands.LineRequest("l1", "A", 5, substitute_skus=("B",)),
        commands.LineRequest("l2", "C", 4, substitute_skus=("B",)),
    ), policy=Policy(allow_partial=True))
    assert held(reservation) == [("l1", "B", "N1", 5, "A"), ("l2", "C", "N1", 2, "")]
    assert reservation.lines[1].backordered_quantity == 2


# ----- client and atpctl -----------------------------------------------------------------------


def test_the_client_builds_substitutes_into_requests() -> None:
    from atp.client import PROMISE, reserve_request

    line = {"line_id": "l1", "sku": "A", "quantity": 2, "substitute_skus": ["B", "C"],
            "need_by_date": "2026-12-24"}
    request = reserve_request("r1", [line], allow_substitution=True)
    assert request.allow_substitution
    assert list(request.lines[0].substitute_skus) == ["B", "C"]
    assert (request.lines[0].need_by_date.year, request.lines[0].need_by_date.day) == (2026, 24)
    assert not reserve_request("r1", [line]).allow_substitution  # off unless asked
    promise = PROMISE.build([{**line, "need_by_date": datetime.date(2026, 12, 24)}], "EU")
    assert list(promise.lines[0].substitute_skus) == ["B", "C"]
    assert promise.lines[0].need_by_date.month == 12


def test_atpctl_substitute_options_parse_and_attach_to_their_lines() -> None:
    import argparse

    from atp.cli.substitutes import need_by, substitute_list, with_substitutes

    assert substitute_list("l1=B,C") == ("l1", ["B", "C"])
    assert need_by("l1=2026-12-24") == ("l1", datetime.date(2026, 12, 24))
    for bad in ("l1", "l1=", "l1=B,,C", "=B"):
        with pytest.raises(argparse.ArgumentTypeError):
            substitute_list(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        need_by("l1=24.12.2026")
    lines = [{"line_id": "l1", "sku": "A", "quantity": 1}, {"line_id": "l2", "sku": "B",
                                                             "quantity": 1}]
    arguments = argparse.Namespace(substitutes=[("l2", ["C"])],
                                   need_by=[("l2", datetime.date(2026, 12, 24))])
    assert with_substitutes(lines, arguments)[1] == {
        "line_id": "l2", "sku": "B", "quantity": 1, "substitute_skus": ["C"],
        "need_by_date": datetime.date(2026, 12, 24)}
    with pytest.raises(ValueError, match="no --line has"):
        with_substitutes(lines, argparse.Namespace(substitutes=[("l9", ["C"])], need_by=[]))
    with pytest.raises(ValueError, match="twice"):
        with_substitutes(lines, argparse.Namespace(substitutes=[("l1", ["C"]), ("l1", ["D"])],
                                                   need_by=[]))
