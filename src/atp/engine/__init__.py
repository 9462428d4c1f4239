"""The application layer: the single writer and its group commit, the event hub, retention
and storage limits, the engine's clock, and the read queries (listing) over the ledger.

It drives the domain core (atp.ledger) and stores through the persistence mapping
(atp.persistence) into the storage (atp.store); it knows nothing of gRPC (atp.server, the
transport, calls it) and is wired together by atp.bootstrap.

May import: atp.ledger, atp.persistence, atp.store, atp.limits; never grpc, atp.server,
atp.bootstrap.
"""
