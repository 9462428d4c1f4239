"""Look-ahead ATP arithmetic on hand-computed examples (docs/contract.md, Quantities)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from atp.ledger import timeline
from atp.ledger.model import Position

TODAY = 1000


def position(on_hand: int = 0, held: int = 0, safety_stock: int = 0, **deltas: int) -> Position:
    """A position whose deltas are given as d<offset>=amount (offset in days from TODAY)."""
    result = Position("SKU", "DC1", on_hand=on_hand, held=held, safety_stock=safety_stock)
    for name, amount in deltas.items():
        result.add_delta(TODAY + int(name[1:]), amount)
    return result


def test_stock_only_position_has_flat_atp_of_on_hand_minus_holds_and_safety_stock() -> None:
    stock = position(on_hand=10, held=2, safety_stock=3)
    assert timeline.atp_steps(stock, TODAY, include_safety_stock=False) == [(TODAY, 5)]
    assert timeline.atp_steps(stock, TODAY, include_safety_stock=True) == [(TODAY, 8)]


def test_future_demand_lowers_atp_today_look_ahead() -> None:
    # on_hand 10; 8 units demanded on day +5; 4 inbound on day +7.
    # net: today 10, +5: 2, +7: 6  ->  ATP: today 2, +5: 2, +7: 6
    stock = position(on_hand=10, d5=-8, d7=4)
    assert timeline.net_steps(stock, TODAY, False) == [(TODAY, 10), (TODAY + 5, 2), (TODAY + 7, 6)]
    assert timeline.atp_steps(stock, TODAY, False) == [(TODAY, 2), (TODAY + 5, 2), (TODAY + 7, 6)]
    assert timeline.available_now(stock, TODAY, False) == 2
    assert timeline.atp_on(stock, TODAY, TODAY + 6, False) == 2
    assert timeline.atp_on(stock, TODAY, TODAY + 7, False) == 6


def test_earliest_day_waits_for_inbound_supply() -> None:
    # on_hand 3, inbound 10 on day +4: 5 units can ship from day +4 on, 3 from today.
    stock = position(on_hand=3, d4=10)
    assert timeline.earliest_day(stock, TODAY, TODAY, 3, False) == TODAY
    assert timeline.earliest_day(stock, TODAY, TODAY, 5, False) == TODAY + 4
    assert timeline.earliest_day(stock, TODAY, TODAY + 6, 5, False) == TODAY + 6
    assert timeline.earliest_day(stock, TODAY, TODAY, 14, False) is None
    assert timeline.max_promisable(stock, TODAY, False) == 13


def test_overdue_supply_and_demand_count_as_today() -> None:
    stock = position(on_hand=5, **{"d-3": 4})  # inbound expected 3 days ago, not yet received
    stock.add_delta(TODAY - 1, -6)  # demand that was due yesterday, not yet shipped
    assert timeline.net_steps(stock, TODAY, False) == [(TODAY, 3)]
    assert timeline.available_now(stock, TODAY, False) == 3


def test_short_position_has_negative_atp_and_reports_short() -> None:
    # on_hand 4, demand 6 today: net -2 today; inbound 5 on day +2 brings net to 3.
    stock = position(on_hand=4, d0=-6, d2=5)
    assert timeline.atp_steps(stock, TODAY, False) == [(TODAY, -2), (TODAY + 2, 3)]
    assert timeline.available_now(stock, TODAY, False) == 0
    assert timeline.is_short(stock, TODAY)
    assert not timeline.is_short(position(on_hand=4, d0=-4), TODAY)


@given(
    on_hand=st.integers(0, 50), held=st.integers(0, 20), safety_stock=st.integers(0, 20),
    deltas=st.dictionaries(st.integers(-3, 10), st.integers(-30, 30), max_size=6),
    include_safety_stock=st.booleans(),
)
def test_atp_today_is_atp_on_today(
    on_hand: int, held: int, safety_stock: int, deltas: dict[int, int], include_safety_stock: bool
) -> None:
    stock = position(on_hand=on_hand, held=held, safety_stock=safety_stock)
    for offset, amount in deltas.items():
        stock.add_delta(TODAY + offset, amount)
    assert timeline.atp_today(stock, TODAY, include_safety_stock) == timeline.atp_on(
        stock, TODAY, TODAY, include_safety_stock
    )
    # atp_on(today) now takes atp_today's path itself: check both against the ATP steps.
    steps = timeline.atp_steps(stock, TODAY, include_safety_stock)
    for day in (TODAY - 1, TODAY):
        assert timeline.atp_on(stock, TODAY, day, include_safety_stock) == timeline.atp_in(steps, day)


@given(
    on_hand=st.integers(0, 50), held=st.integers(0, 20), safety_stock=st.integers(0, 20),
    deltas=st.dictionaries(st.integers(-3, 10), st.integers(-30, 30), max_size=6),
)
def test_lowest_net_decides_shortage_and_stock_flags_as_the_timeline_does(
    on_hand: int, held: int, safety_stock: int, deltas: dict[int, int]
) -> None:
    # The ledger computes lowest_net once per touched position and gives it to both the
    # at-risk refresh and the stock-level announcement: it must be what each computed itself.
    stock = position(on_hand=on_hand, held=held, safety_stock=safety_stock)
    for offset, amount in deltas.items():
        stock.add_delta(TODAY + offset, amount)
    steps = timeline.net_steps(stock, TODAY, include_safety_stock=True)
    lowest = timeline.lowest_net(stock, TODAY)
    assert lowest == min(net for _, net in steps)
    assert timeline.is_short(stock, TODAY) == any(net < 0 for _, net in steps)
    free = timeline.atp_on(stock, TODAY, TODAY, include_safety_stock=True)
    assert timeline.stock_flags(stock, TODAY, lowest) == timeline.stock_flags(stock, TODAY) == (
        free - safety_stock > 0, safety_stock > 0 and free < safety_stock)
