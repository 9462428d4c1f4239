"""Persistence mapping: the ledger's records to and from stored bytes.

codec (the encoding of each record kind and of journal events), records (which stored
records a change set writes), rebuild (a ledger from its stored records, at start and for
`atpctl db verify`) and archive (closed reservations, ended holds and idempotency records
read back from the store on demand).

May import: atp.ledger (its public API only) and atp.store; nothing of the application
(atp.engine) or transport (atp.server) layers.
"""

from atp.persistence.rebuild import ledger_from_records
from atp.persistence.records import encode_batch

__all__ = ["encode_batch", "ledger_from_records"]
