"""check_reserve's fast path accepts only what the field-by-field check accepts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp import limits
from atp.ledger import commands
from atp.ledger import validation
from atp.ledger.errors import InvalidArgument
from atp.ledger.model import Objective, Policy
from atp.ledger.promising import OrderLine

TODAY = 740_000

# Ids near every edge: empty, the longest allowed and one longer, non-ASCII, unprintable,
# blank, with whitespace at an end or inside.
ids = st.one_of(
    st.sampled_from(["", "a", "l1", "SKU-1", "x" * limits.id_bytes_max, "x" * (limits.id_bytes_max + 1),
                     "é", "a\tb", "a\x00", "ü" * (limits.id_bytes_max // 2 + 1),
                     " ", "   ", "\t", " a", "a ", "a b", "é ", "\u3000", " " * (limits.id_bytes_max + 1)]),
    st.text(max_size=8),
    st.text(" a\té\u3000", max_size=4),
)
quantities = st.sampled_from([-1, 0, 1, 7, limits.quantity_max, limits.quantity_max + 1])
dates = st.sampled_from([None, (0, 0, 0), (2026, 12, 1), (2026, 2, 30)])
lines = st.builds(commands.LineRequest, ids, ids, quantities, ids, dates)
reserve_commands = st.builds(
    commands.Reserve,
    reservation_id=ids,
    lines=st.lists(lines, max_size=4).map(tuple) | st.sampled_from([(commands.LineRequest("l", "s", 1),) * 2]),
    destination_region=ids,
    policy=st.builds(Policy, st.booleans(), st.sampled_from([-1, 0, 2]), st.booleans(),
                     st.sampled_from(list(Objective))),
    ttl_seconds=st.sampled_from([-1, 0, 60, limits.ttl_seconds_max, limits.ttl_seconds_max + 1]),
    channel=ids,
    customer_id=ids,
)


@settings(max_examples=500)
@given(reserve_commands)
def test_fast_path_agrees_with_the_full_check(command: commands.Reserve) -> None:
    try:
        expected: list[int | None] | InvalidArgument = validation.check_reserve_fields(command, TODAY)
    except InvalidArgument as error:
        expected = error
    if isinstance(expected, InvalidArgument):
        with pytest.raises(InvalidArgument) as raised:
            validation.check_reserve(command, TODAY)
        assert raised.value.violations == expected.violations
    else:
        assert validation.check_reserve(command, TODAY) == expected


@settings(max_examples=500)
@given(ids)
def test_plain_id_agrees_with_the_full_id_check(value: str) -> None:
    """Violations.identifier's fast path accepts only ids the full check finds nothing wrong
    with; and for printable ASCII (its domain) it accepts every one of those."""
    if validation._is_plain_id(value):
        assert validation.id_problem(value) == ""
    elif value and value.isascii() and value.isprintable() and len(value) <= limits.id_bytes_max:
        assert validation.id_problem(value) != ""
    if value:
        violations = validation.Violations()
        violations.identifier("id", value)
        assert [v.description for v in violations.items] == [p for p in [validation.id_problem(value)] if p]


def test_blank_ids_and_edge_whitespace_leave_the_fast_path() -> None:
    for value in (" ", "   ", " a", "a "):
        assert not validation._is_plain_id(value)
        assert not validation.is_plain_reserve(commands.Reserve(value, (commands.LineRequest("l1", "S1", 1),)))
        assert not validation.is_plain_reserve(commands.Reserve("r1", (commands.LineRequest("l1", value, 1),)))
        assert not validation._is_plain_promise([OrderLine(value, "S1", 1)], "EU", Policy())


def test_plain_reserve_takes_the_fast_path() -> None:
    """The case the fast path exists for is recognised (else it is never used)."""
    command = commands.Reserve("r1", (commands.LineRequest("l1", "S1", 1, "N1"), commands.LineRequest("l2", "S2", 3)))
    assert validation.is_plain_reserve(command)


order_lines = st.builds(OrderLine, ids, ids, quantities)


@settings(max_examples=500)
@given(
    st.lists(order_lines, max_size=4) | st.sampled_from([[OrderLine("l", "s", 1)] * 2]),
    ids,
    st.builds(Policy, st.booleans(), st.sampled_from([-1, 0, 2]), st.booleans(),
              st.sampled_from(list(Objective))),
)
def test_promise_fast_path_agrees_with_the_full_check(
    lines: list[OrderLine], region: str, policy: Policy
) -> None:
    try:
        validation.check_promise_fields(lines, region, policy)
        expected: InvalidArgument | None = None
    except InvalidArgument as error:
        expected = error
    if expected is None:
        validation.check_promise(lines, region, policy)
    else:
        with pytest.raises(InvalidArgument) as raised:
            validation.check_promise(lines, region, policy)
        assert raised.value.violations == expected.violations


def test_plain_promise_takes_the_fast_path() -> None:
    assert validation._is_plain_promise([OrderLine("l1", "S1", 2)], "EU", Policy())
