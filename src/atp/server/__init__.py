"""The gRPC transport: servicers, protobuf conversion, the status mapping, request decoding,
admission and metrics. It calls the application layer (atp.engine); atp.bootstrap wires it.

May import: atp.engine, atp.ledger (commands, outcomes, records and errors to convert),
atp.persistence (the archive, for listings), atp.store, atp.v1, atp.limits, atp.flags;
never atp.bootstrap, atp.daemon or atp.cli.
"""
