"""A gateway's prechecks refuse what the ledger refuses from a command's fields alone, with
the same field violations, and pass what the ledger would accept or judge by its state or
clock (a replay of an old request with dates now past is answered, not refused)."""

from __future__ import annotations

import datetime

import pytest

from atp.ledger import Ledger, LedgerConfig, commands, day_of, errors
from atp.ledger.model import Lane
from atp.ledger.prechecks import precheck

NOW = datetime.datetime(2026, 11, 22, 12, tzinfo=datetime.UTC).timestamp()
TODAY = day_of(NOW)
LINE = commands.LineRequest("l1", "A", 1, "DC1")
PAST = (2026, 11, 1)

BAD = [
    commands.Reserve("", (LINE,)),
    commands.Reserve("r", ()),
    commands.Reserve("r", (commands.LineRequest("l1", "A", 0, "DC1"),
                           commands.LineRequest("l1", "", 1))),
    commands.Reserve("r", (LINE,), ttl_seconds=-1),
    commands.Reserve("r", (commands.LineRequest("l1", "A", 1, ship_date=(2026, 2, 30)),)),
    commands.Commit("", "q"),
    commands.Commit("r", "", expected_version=-1),
    commands.Release("r", "q", (commands.LineQuantity("", 0),)),
    commands.Fulfill("r", "q", (commands.LineQuantity("l1", 1), commands.LineQuantity("l1", 2))),
    commands.Extend("r", "q", ttl_seconds=-5),
    commands.RecordDelivery("r", "q", None, -1),
    commands.UpsertNode(""),
    commands.UpsertNode("n", kind="no spaces", lanes=(Lane("", -1, 0),)),
    commands.UpsertSupply("", "A", "DC1", -1, None),
    commands.ReceiveSupply("", "s", 0),
    commands.PlaceHold("", "A", "DC1", 0),
    commands.ReleaseHold(""),
]


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger(LedgerConfig(default_ttl_seconds=600, safety_stock_priority_min=100))
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    ledger.execute(commands.AdjustStock("seed", (commands.Movement("A", "DC1", "RECEIPT", 10),)),
                   NOW)
    return ledger


def _violations(error: errors.InvalidArgument) -> list[tuple[str, str]]:
    return [(v.field, v.description) for v in error.violations]


@pytest.mark.parametrize("command", BAD, ids=lambda c: type(c).__name__)
def test_what_the_fields_show_wrong_is_refused_as_the_ledger_refuses_it(
    ledger: Ledger, command: commands.Command,
) -> None:
    with pytest.raises(errors.InvalidArgument) as by_ledger:
        ledger.execute(command, NOW)
    with pytest.raises(errors.InvalidArgument) as by_precheck:
        precheck(command)
    assert _violations(by_precheck.value) == _violations(by_ledger.value)


def test_dates_are_the_ledgers_to_judge_so_a_replay_of_an_old_request_passes(
    ledger: Ledger,
) -> None:
    then = NOW - 30 * 86400
    old = commands.Reserve("r-old", (commands.LineRequest("l1", "A", 1, "DC1",
                                                          ship_date=(2026, 10, 30)),))
    first = ledger.execute(old, then)
    assert precheck(old) is old  # its ship date is past now: not the precheck's to refuse
    assert ledger.execute(old, NOW) == first  # the ledger answers the replay
    expired_hold = commands.PlaceHold("h", "A", "DC1", 1, expire_time=NOW - 60)
    precheck(expired_hold)
    with pytest.raises(errors.InvalidArgument):
        ledger.execute(expired_hold, NOW)  # ... and refuses what is not a replay


def test_good_commands_and_those_without_prechecks_pass() -> None:
    # Whatever a check returns (some return parsed dates), the command goes as it is.
    for command in (commands.Commit("r", "q"),
                    commands.UpsertNode("n"), commands.ReleaseHold("h"),
                    commands.UpsertSupply("s1", "A", "DC1", 5, (2026, 12, 24)),
                    commands.ReceiveSupply("s1", "q", 2),
                    commands.PlaceHold("h", "A", "DC1", 1, expire_time=NOW + 60),
                    commands.Extend("r", "q", ttl_seconds=60),
                    commands.Reallocate(), commands.SetSafetyStock("", "", -1)):
        assert precheck(command) is command


def test_a_plain_reserve_goes_vetted_with_its_digest_and_applies_as_itself(
    ledger: Ledger,
) -> None:
    plain = commands.Reserve("r1", (LINE, commands.LineRequest("l2", "A", 2, "DC1")), commit=True)
    vetted = precheck(plain)
    assert vetted == commands.VettedReserve(plain, commands.digest(plain))
    twin = Ledger(LedgerConfig(default_ttl_seconds=600, safety_stock_priority_min=100))
    for command in (commands.UpsertNode("DC1"),
                    commands.AdjustStock("seed", (commands.Movement("A", "DC1", "RECEIPT", 10),))):
        twin.execute(command, NOW)
    assert ledger.execute(vetted, NOW) == twin.execute(plain, NOW)
    assert ledger.execute(vetted, NOW + 5) == ledger.execute(plain, NOW + 5)  # replays
    assert ledger.vetted_digest == ""
    # Other content under the same id, vetted or not, is refused as it is in one process.
    other = plain._replace(lines=(LINE,))
    for command in (other, precheck(other)):
        with pytest.raises(errors.AlreadyExists):
            ledger.execute(command, NOW)
    # What is not plain goes as it is: the writer checks it (dates) and digests it.
    dated = commands.Reserve("r2", (commands.LineRequest("l1", "A", 1, ship_date=(2026, 12, 1)),))
    substituting = commands.Reserve("r3", (commands.LineRequest(
        "l1", "A", 1, substitute_skus=("B",)),))
    assert precheck(dated) is dated and precheck(substituting) is substituting
