"""The ledger's behaviour: one module per aggregate, each handler of the form
`(state, command, now) -> result`, raising a LedgerError (and changing nothing) to refuse.

stock (nodes, stock movements, safety stock), supply, holds, reservations (with placing,
where a Reserve's lines go), expiry, reallocation (and backorder fills), risk (at-risk
marks and stock levels after each command) and allocation (allocation policies).
atp.ledger.ledger dispatches to them.

May import: the rest of atp.ledger (state, model, commands, errors, validation, timeline,
promising and reallocation planning) and atp.limits; never atp.ledger.ledger, nor anything
outside the domain.
"""
