"""The gRPC transport: servicers, protobuf conversion, the status mapping, request decoding,
admission and metrics. It calls the application layer (atp.engine); atp.bootstrap wires it."""
