"""At-risk marks and stock levels, kept after every command for the positions it touched:
lines that no longer fit go at risk (LINE_AT_RISK), lines that fit again recover, and a
position announces running out, coming back and dropping below its safety stock."""

from __future__ import annotations

from atp.ledger import risk, timeline
from atp.ledger.errors import NODE_INACTIVE
from atp.ledger.model import Day, Position
from atp.ledger.state import LedgerState, LineKey

SHORTAGE = "SHORTAGE"
SUPPLY_SLIPPED = "SUPPLY_SLIPPED"


def note_day(state: LedgerState, today: Day) -> None:
    """A new day can change which lines fit (what was dated later is due now): re-examine
    every position with lines at risk. Positions not short stay so as days pass."""
    if today == state.risk_day:
        return
    state.risk_day = today
    for position in state.positions.values():  # in a deterministic order, unlike the set
        if position.at_risk:
            state.reexamine(position)


def refresh_risk(
    state: LedgerState, position: Position, trigger: str, now: float, today: Day, lowest: int
) -> None:
    """Marks the position's lines that no longer fit at risk (for `trigger`), and clears the
    marks of those that fit again; `lowest`: timeline.lowest_net of the position now."""
    node = state.nodes.get(position.node_id)
    decided_by: dict[LineKey, str] = {}
    if node is not None and not node.active:
        risky, reason = set(position.lines), NODE_INACTIVE
    elif position.at_risk or lowest < 0:  # timeline.is_short
        policy = state.policy_for(position.sku, position.node_id)
        placed = risk.place_lines(position, state.reservations, today, policy)
        decided_by = {line.key: line.decided_by for line in placed if not line.fits}
        risky, reason = set(decided_by), trigger
    else:
        return
    for key in position.at_risk - risky:
        _mark_line(state, position, key, "", now)
    for key in sorted(risky):  # events in a deterministic order
        current = position.lines[key].at_risk_reason
        # A line keeps the reason it went at risk for, unless its node went down or back up.
        if current != reason and (current in ("", NODE_INACTIVE) or reason == NODE_INACTIVE):
            _mark_line(state, position, key, reason, now, decided_by.get(key, ""))
    state.at_risk_count += len(risky) - len(position.at_risk)
    position.at_risk = frozenset(risky)
    if risky:
        state.positions_at_risk.add(position.key)
    else:
        state.positions_at_risk.discard(position.key)


def _mark_line(
    state: LedgerState, position: Position, key: LineKey, reason: str, now: float,
    decided_by: str = "",
) -> None:
    """Marks a line at risk for `reason` ("" clears the mark); `decided_by` is the policy
    criterion that placed it after the last line ahead of it that fits."""
    line = position.lines[key]
    line.at_risk = bool(reason)
    line.at_risk_reason = reason
    state.save_reservation(state.reservations[key[0]])
    data: dict[str, object] = {
        "reservation_id": key[0], "line_id": key[1], "sku": line.sku,
        "node_id": line.node_id, "quantity": line.open_quantity, "reason": reason,
    }
    if reason:
        data["decided_by"] = decided_by
    state.emit(now, "LINE_AT_RISK" if reason else "LINE_RECOVERED", **data)


def announce_stock_level(
    state: LedgerState, position: Position, now: float, today: Day, lowest: int
) -> None:
    """Announces a position running out, coming back, or dropping below its safety stock;
    `lowest`: timeline.lowest_net of the position now."""
    flags = timeline.stock_flags(position, today, lowest)
    previous = position.stock_flags or (False, False)
    position.stock_flags = flags
    event_type = ""
    if previous[0] != flags[0]:
        event_type = "POSITION_BACK_IN_STOCK" if flags[0] else "POSITION_OUT_OF_STOCK"
    elif flags[1] and not previous[1]:
        event_type = "POSITION_BELOW_SAFETY_STOCK"
    if event_type:
        state.emit(
            now, event_type, sku=position.sku, node_id=position.node_id,
            on_hand=position.on_hand, safety_stock=position.safety_stock,
        )
