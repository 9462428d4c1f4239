"""The gRPC transport: servicers, status mapping, the group-commit writer and the composition root."""
