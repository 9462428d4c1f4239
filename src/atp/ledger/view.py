"""What the ledger's planners and checks may read of it: a narrow, read-only view.

Promising, reallocation planning and the invariant checks are given a LedgerView rather than
the Ledger class itself, so that none of them imports the module that uses them (the ledger
module imports them; they import only this protocol and the model).
"""

from __future__ import annotations

from typing import Protocol

from sortedcontainers import SortedList

from atp.ledger.allocation_policy import AllocationPolicy
from atp.ledger.model import ChannelAllocation, Hold, Lane, Node, Position, Reservation, Supply
from atp.ledger.sortedkeys import LazySortedSet


class LedgerView(Protocol):
    @property
    def nodes(self) -> dict[str, Node]: ...

    @property
    def positions(self) -> dict[tuple[str, str], Position]: ...

    @property
    def positions_by_sku(self) -> dict[str, dict[str, Position]]: ...

    @property
    def positions_by_node(self) -> dict[str, dict[str, Position]]: ...

    @property
    def reservations(self) -> dict[str, Reservation]: ...

    @property
    def supplies(self) -> dict[str, Supply]: ...

    @property
    def holds(self) -> dict[str, Hold]: ...

    @property
    def holds_by_position(self) -> dict[tuple[str, str], dict[str, Hold]]: ...

    @property
    def backorders(self) -> dict[str, set[tuple[str, str]]]: ...

    @property
    def expiries(self) -> SortedList: ...

    @property
    def positions_at_risk(self) -> set[tuple[str, str]]: ...

    @property
    def held_ids(self) -> LazySortedSet[str]: ...

    @property
    def committed_ids(self) -> LazySortedSet[str]: ...

    @property
    def channel_allocations(self) -> dict[str, dict[tuple[str, str], ChannelAllocation]]: ...

    @property
    def channel_units(self) -> dict[tuple[str, str], dict[str, int]]: ...

    @property
    def sku_channel_units(self) -> dict[str, dict[str, int]]: ...

    @property
    def supply_bases(self) -> dict[str, int]: ...

    def supply_base_of(self, sku: str) -> int: ...

    def include_safety_stock(self, priority: int) -> bool: ...

    def policy_for(self, sku: str, node_id: str) -> AllocationPolicy: ...

    @property
    def default_policy(self) -> AllocationPolicy: ...

    def known_sku(self, sku: str) -> dict[str, Position]: ...

    def node(self, node_id: str) -> Node: ...

    def reservation(self, reservation_id: str) -> Reservation: ...

    def routes_to(self, region: str) -> tuple[list[Node], dict[str, Lane]]: ...


