"""atp-engine: a durable inventory ledger and order-promising engine served over gRPC."""

__version__ = "0.1.0"
