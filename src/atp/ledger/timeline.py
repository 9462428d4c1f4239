"""Time-phased available-to-promise with look-ahead (docs/contract.md, "Quantities").

    net(t) = S(t) - D(t) - held - safety_stock
    ATP(d) = min over t >= d of net(t)

Supply or demand dated before today counts as today.
"""

from __future__ import annotations

from atp.ledger.model import Day, Position


def net_steps(position: Position, today: Day, include_safety_stock: bool) -> list[tuple[Day, int]]:
    """[(day, net)] from today on: net holds from that day until the next step's day."""
    net, future = _net_today_and_later(position, today, include_safety_stock)
    steps = [(today, net)]
    if future:
        future.sort()
        for day, amount in future:
            net += amount
            steps.append((day, net))
    return steps


def _net_today_and_later(
    position: Position, today: Day, include_safety_stock: bool
) -> tuple[int, list[tuple[Day, int]]]:
    """(net today, counting what is dated today or earlier; the later (day, delta), unsorted)."""
    net = position.on_hand - position.held
    if not include_safety_stock:
        net -= position.safety_stock
    later: list[tuple[Day, int]] = []
    for day, amount in position.deltas.items():
        if day <= today:
            net += amount
        else:
            later.append((day, amount))
    return net, later


def atp_steps(position: Position, today: Day, include_safety_stock: bool) -> list[tuple[Day, int]]:
    """[(day, ATP(day))] from today on; ATP is non-decreasing along the list."""
    steps = net_steps(position, today, include_safety_stock)
    return steps if len(steps) == 1 else _suffix_minimum(steps)


def _suffix_minimum(steps: list[tuple[Day, int]]) -> list[tuple[Day, int]]:
    """[(day, min of net from that step on)]."""
    result: list[tuple[Day, int]] = []
    running_min: int | None = None
    for day, net in reversed(steps):
        running_min = net if running_min is None else min(running_min, net)
        result.append((day, running_min))
    result.reverse()
    return result


def atp_on(position: Position, today: Day, day: Day, include_safety_stock: bool) -> int:
    """ATP(day): units that can be promised for shipment on `day` without hurting later demand."""
    if day <= today:
        return atp_today(position, today, include_safety_stock)  # no steps needed
    steps = net_steps(position, today, include_safety_stock)
    if len(steps) == 1:
        return steps[0][1]  # nothing dated in the future: ATP is today's net on every day
    return atp_in(_suffix_minimum(steps), day)


def atp_today(position: Position, today: Day, include_safety_stock: bool) -> int:
    """ATP(today): the lowest net of the whole timeline, without building its steps (asked
    after every change to a position)."""
    net, later = _net_today_and_later(position, today, include_safety_stock)
    lowest = net
    if later:
        later.sort()
        for _, amount in later:
            net += amount
            lowest = min(lowest, net)
    return lowest


def atp_in(steps: list[tuple[Day, int]], day: Day) -> int:
    """ATP(day) read from atp_steps (days before the first step read as the first)."""
    atp_value = steps[0][1]
    for step_day, value in steps:
        if step_day > day:
            break
        atp_value = value
    return atp_value


def stock_only_atp(position: Position, today: Day, include_safety_stock: bool) -> int:
    """ATP(today) without inbound supply due by today: what stock on hand alone can cover."""
    return atp_on(position, today, today, include_safety_stock) - supply_due(position, today)


def supply_due(position: Position, today: Day) -> int:
    """Open inbound supply dated today or earlier (counted as there, though not received)."""
    if not position.supply_days:
        return 0
    return sum(amount for day, amount in position.supply_days.items() if day <= today)


def available_now(position: Position, today: Day, include_safety_stock: bool) -> int:
    """max(0, ATP(today))."""
    return max(0, atp_on(position, today, today, include_safety_stock))


def earliest_day(
    position: Position, today: Day, not_before: Day, quantity: int, include_safety_stock: bool
) -> Day | None:
    """First day >= not_before with ATP(day) >= quantity, or None when no day has it."""
    return earliest_in(atp_steps(position, today, include_safety_stock), not_before, quantity)


def earliest_and_stock_atp(
    position: Position, today: Day, not_before: Day, quantity: int, include_safety_stock: bool
) -> tuple[Day | None, int]:
    """earliest_day and stock_only_atp from one pass over the position's timeline."""
    steps = atp_steps(position, today, include_safety_stock)
    return earliest_in(steps, not_before, quantity), steps[0][1] - supply_due(position, today)


def earliest_in(steps: list[tuple[Day, int]], not_before: Day, quantity: int) -> Day | None:
    """earliest_day read from atp_steps."""
    for index, (day, value) in enumerate(steps):
        next_day = steps[index + 1][0] if index + 1 < len(steps) else None
        if next_day is not None and next_day <= not_before:
            continue  # this step ends before not_before
        if value >= quantity:
            return max(day, not_before)
    return None


def max_promisable(position: Position, today: Day, include_safety_stock: bool) -> int:
    """The most units promisable on any day (ATP on the last step, never below 0)."""
    steps = atp_steps(position, today, include_safety_stock)
    return max(0, steps[-1][1])


def lowest_net(position: Position, today: Day) -> int:
    """The lowest net of the whole timeline, safety stock counted as available: below 0 some
    demand is at risk (is_short), and it is ATP(today) for stock_flags. The ledger computes it
    once per touched position after each command and gives it to both."""
    return atp_today(position, today, include_safety_stock=True)


def is_short(position: Position, today: Day) -> bool:
    """Some day's net supply (safety stock aside) is negative: some demand is at risk."""
    return lowest_net(position, today) < 0


def is_short_in(
    steps: list[tuple[Day, int]], position: Position, include_safety_stock: bool
) -> bool:
    """is_short read from atp_steps already computed with include_safety_stock: their first
    value is the lowest net of the whole timeline; safety stock counts as available here."""
    return steps[0][1] + (0 if include_safety_stock else position.safety_stock) < 0


def stock_flags(position: Position, today: Day, free: int | None = None) -> tuple[bool, bool]:
    """(anything available to normal demand, free units below the safety stock); `free`:
    lowest_net, when already computed."""
    if free is None:
        free = lowest_net(position, today)
    return (
        free - position.safety_stock > 0,
        position.safety_stock > 0 and free < position.safety_stock,
    )
