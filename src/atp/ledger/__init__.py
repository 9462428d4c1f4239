"""The domain core: a pure, deterministic ledger of stock, supply, holds and reservations.

state (LedgerState: the indexes and their bookkeeping, and the record of changes), handlers
(the behaviour, a module per aggregate), ledger (Ledger: the state and its entry points),
promising and reallocation planning (read the state through view.LedgerView), model,
commands, outcomes, errors, validation, timeline, risk, invariants.

May import: the standard library, sortedcontainers and atp.limits; never grpc, lmdb, the
store, or any other layer of atp (they import it). Time comes in with each command.
"""

from atp.ledger.ledger import Ledger
from atp.ledger.model import day_of
from atp.ledger.outcomes import Outcome, Refused, Result
from atp.ledger.state import Changes, LedgerConfig, LedgerState

__all__ = [
    "Changes", "Ledger", "LedgerConfig", "LedgerState", "Outcome", "Refused", "Result", "day_of",
]
