"""The domain core: a pure, deterministic ledger of stock, supply, holds and reservations.

Imports neither grpc nor lmdb; time comes in with each command.
"""

from atp.ledger.ledger import Changes, Ledger, LedgerConfig, day_of, position_key
from atp.ledger.rebuild import ledger_from_records

__all__ = ["Changes", "Ledger", "LedgerConfig", "day_of", "ledger_from_records", "position_key"]
