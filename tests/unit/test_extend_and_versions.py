"""Reservations.Extend and reservation versions (expected_version, AIP-154's etag rule), in
the ledger: what moves a version, what a stale caller is told, and that a refusal or a
replay changes nothing."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from atp.ledger import Ledger, Refused, commands, errors
from atp.ledger.model import Reservation, ReservationState
from atp.ledger.state import LedgerConfig
from atp.persistence import codec

NOW = 1_790_000_000.0
DEFAULT_TTL = 900


def rfc3339(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stocked(units: int = 10) -> Ledger:
    ledger = Ledger(LedgerConfig(default_ttl_seconds=DEFAULT_TTL))
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    movement = commands.Movement("A", "DC1", "RECEIPT", units)
    ledger.execute(commands.AdjustStock("seed", (movement,)), NOW)
    return ledger


def held(ledger: Ledger, reservation_id: str = "o1", quantity: int = 4,
         ttl_seconds: int = 60) -> Reservation:
    line = commands.LineRequest("l1", "A", quantity, "DC1")
    reservation = ledger.apply(
        commands.Reserve(reservation_id, (line,), ttl_seconds=ttl_seconds), NOW
    )
    assert isinstance(reservation, Reservation)
    return reservation


def ok(ledger: Ledger, command: commands.Command, now: float = NOW) -> Reservation:
    outcome = ledger.apply(command, now)
    assert isinstance(outcome, Reservation), outcome
    return outcome


def refused(ledger: Ledger, command: commands.Command, now: float = NOW) -> Refused:
    sequence = ledger.sequence
    before = {rid: repr(r) for rid, r in ledger.known_reservations().items()}
    outcome = ledger.apply(command, now)
    assert isinstance(outcome, Refused), outcome
    assert ledger.sequence == sequence, "a refusal emitted an event"
    assert {rid: repr(r) for rid, r in ledger.known_reservations().items()} == before
    return outcome


# ----- versions ------------------------------------------------------------------------------


def test_a_version_starts_at_1_and_moves_with_every_change_but_not_a_replay() -> None:
    ledger = stocked()
    reservation = held(ledger)
    assert reservation.version == 1
    seen = [1]
    for command in (
        commands.Extend("o1", "e1", 120),
        commands.Commit("o1", "c1"),
        commands.Release("o1", "r1", (commands.LineQuantity("l1", 1),)),
        commands.Fulfill("o1", "f1", (commands.LineQuantity("l1", 1),)),
    ):
        seen.append(ok(ledger, command).version)
        assert ok(ledger, command).version == seen[-1], f"a replay of {command} moved it"
    assert seen == sorted(set(seen)), f"each change moves the version on: {seen}"


def test_a_line_put_at_risk_moves_the_version() -> None:
    ledger = stocked(units=4)
    version = held(ledger).version
    shrink = commands.Movement("A", "DC1", "SHRINKAGE", 2)
    ledger.execute(commands.AdjustStock("lost", (shrink,)), NOW)
    reservation = ledger.reservations["o1"]
    assert any(line.at_risk for line in reservation.lines)
    assert reservation.version > version


@pytest.mark.parametrize("command", [
    commands.Commit("o1", "c1", expected_version=7),
    commands.Release("o1", "r1", expected_version=7),
    commands.Extend("o1", "e1", 120, expected_version=7),
], ids=["commit", "release", "extend"])
def test_a_stale_expected_version_is_refused_and_names_both_versions(
    command: commands.Command,
) -> None:
    ledger = stocked()
    held(ledger)
    refusal = refused(ledger, command)
    assert refusal.reason == errors.VERSION_MISMATCH
    assert refusal.error.metadata == {
        "reservation_id": "o1", "version": "1", "expected_version": "7"}
    assert "changed since it was read" in refusal.message


def test_fulfil_checks_the_version_too() -> None:
    ledger = stocked()
    held(ledger)
    version = ok(ledger, commands.Commit("o1", "c1")).version
    assert refused(ledger, commands.Fulfill("o1", "f1", expected_version=version - 1)).reason \
        == errors.VERSION_MISMATCH
    assert ok(ledger, commands.Fulfill("o1", "f1", expected_version=version)).state \
        is ReservationState.FULFILLED


def test_two_workers_that_read_the_same_version_one_wins() -> None:
    """The fencing the version exists for: a stale worker cannot act after another did."""
    ledger = stocked()
    version = held(ledger).version
    ok(ledger, commands.Commit("o1", "worker-a", expected_version=version))
    late = refused(ledger, commands.Release("o1", "worker-b", expected_version=version))
    assert late.reason == errors.VERSION_MISMATCH


def test_a_retry_of_a_conditional_call_that_succeeded_is_answered_as_the_first_time() -> None:
    ledger = stocked()
    version = held(ledger).version
    first = ok(ledger, commands.Commit("o1", "c1", expected_version=version))
    again = ok(ledger, commands.Commit("o1", "c1", expected_version=version))
    assert again.version == first.version == version + 1


def test_a_negative_expected_version_is_invalid() -> None:
    ledger = stocked()
    held(ledger)
    refusal = refused(ledger, commands.Commit("o1", "c1", expected_version=-1))
    assert refusal.reason == "INVALID_ARGUMENT"
    assert refusal.error.violations[0].field == "expected_version"


def test_the_version_is_stored_and_a_record_from_before_versions_loads_as_1() -> None:
    ledger = stocked()
    reservation = ok(ledger, commands.Commit("o1", "c1")) if held(ledger) else None
    assert reservation is not None and reservation.version == 2
    stored: dict[str, Any] = codec._reservation(reservation)
    assert codec._reservation_back(stored).version == 2
    del stored["v"]
    assert codec._reservation_back(stored).version == 1


# ----- Extend --------------------------------------------------------------------------------


def test_extend_moves_the_expiry_to_ttl_from_now_and_announces_it() -> None:
    ledger = stocked()
    held(ledger, ttl_seconds=60)
    extended = ok(ledger, commands.Extend("o1", "e1", 600), now=NOW + 30)
    assert extended.expire_time == NOW + 630
    changes = ledger.take_changes()
    extended_events = [e for e in changes.events if e.type == "RESERVATION_EXTENDED"]
    assert len(extended_events) == 1
    assert extended_events[0].data == {
        "reservation_id": "o1", "expire_time": rfc3339(NOW + 630), "ttl_seconds": 600}


def test_extend_with_ttl_0_uses_the_default_ttl() -> None:
    ledger = stocked()
    held(ledger, ttl_seconds=60)
    assert ok(ledger, commands.Extend("o1", "e1"), now=NOW + 10).expire_time \
        == NOW + 10 + DEFAULT_TTL


def test_extend_never_moves_the_expiry_earlier_and_then_changes_nothing() -> None:
    ledger = stocked()
    reservation = held(ledger, ttl_seconds=3600)
    sequence = ledger.sequence
    same = ok(ledger, commands.Extend("o1", "e1", 60), now=NOW + 10)
    assert same.expire_time == NOW + 3600
    assert same.version == reservation.version
    assert ledger.sequence == sequence, "an Extend that changed nothing emitted an event"


def test_an_extended_reservation_expires_at_its_new_time_not_the_old_one() -> None:
    ledger = stocked()
    held(ledger, ttl_seconds=60)
    ok(ledger, commands.Extend("o1", "e1", 600), now=NOW + 30)
    ledger.apply(commands.ExpireDue(), NOW + 61)
    assert ledger.reservations["o1"].state is ReservationState.HELD
    assert ledger.positions[("A", "DC1")].reserved == 4
    ledger.apply(commands.ExpireDue(), NOW + 631)
    assert "o1" not in ledger.reservations
    assert ledger.positions[("A", "DC1")].reserved == 0


def test_extend_is_idempotent_on_its_request_id() -> None:
    ledger = stocked()
    held(ledger, ttl_seconds=60)
    first = ok(ledger, commands.Extend("o1", "e1", 600), now=NOW + 30)
    expire_time, version = first.expire_time, first.version
    again = ok(ledger, commands.Extend("o1", "e1", 600), now=NOW + 50)
    assert (again.expire_time, again.version) == (expire_time, version)
    other_body = refused(ledger, commands.Extend("o1", "e1", 700), now=NOW + 50)
    assert other_body.reason == "ALREADY_EXISTS"


def test_extend_refuses_a_reservation_that_is_not_held() -> None:
    ledger = stocked()
    held(ledger)
    ok(ledger, commands.Commit("o1", "c1"))
    committed = refused(ledger, commands.Extend("o1", "e1", 600))
    assert committed.reason == errors.INVALID_STATE
    assert "only a HELD reservation expires" in committed.message
    held(ledger, "o2", quantity=1, ttl_seconds=5)
    ledger.apply(commands.ExpireDue(), NOW + 6)
    expired = refused(ledger, commands.Extend("o2", "e2", 600), now=NOW + 7)
    assert expired.reason == errors.RESERVATION_EXPIRED


@pytest.mark.parametrize("ttl_seconds", [-1, 7 * 24 * 3600 + 1])
def test_extend_refuses_a_ttl_out_of_range(ttl_seconds: int) -> None:
    ledger = stocked()
    held(ledger)
    refusal = refused(ledger, commands.Extend("o1", "e1", ttl_seconds))
    assert refusal.reason == "INVALID_ARGUMENT"
    assert refusal.error.violations[0].field == "ttl_seconds"


def test_extend_of_an_unknown_reservation_is_not_found() -> None:
    assert refused(stocked(), commands.Extend("nope", "e1", 60)).reason == "NOT_FOUND"
