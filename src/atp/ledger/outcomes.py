"""What a command returns: its result, or a refusal. Plain values, so that a batch of
outcomes can cross a process boundary as a batch of commands can (they pickle)."""

from __future__ import annotations

from dataclasses import dataclass

from atp.ledger.allocation_policy import PolicyInForce
from atp.ledger.errors import LedgerError
from atp.ledger.model import Hold, Node, Position, Reservation, Supply
from atp.ledger.quotas import ChannelAllocation
from atp.ledger.reallocation import ReallocationResult


@dataclass(frozen=True, slots=True)
class Refused:
    """A refused command: the domain error as a value (reason, message and details as the
    error carries them). The ledger is as it was before the command."""

    error: LedgerError

    @property
    def reason(self) -> str:
        return self.error.reason

    @property
    def message(self) -> str:
        return self.error.message


# Each command's result: UpsertNode a Node; AdjustStock the positions it moved;
# SetSafetyStock a Position; UpsertSupply and ReceiveSupply a Supply; PlaceHold and
# ReleaseHold a Hold; Reserve, Commit, Release, Fulfill and Extend a Reservation; Reallocate a
# ReallocationResult; ExpireDue how many reservations and holds expired; SetAllocationPolicy
# the PolicyInForce for its scope; SetChannelAllocation the ChannelAllocation.
Result = (
    Node | list[Position] | Position | Supply | Hold | Reservation | ReallocationResult | int
    | PolicyInForce | ChannelAllocation
)
Outcome = Result | Refused
