"""Generated from protos/atp/cluster/etcdpb by `make protos` (grpcio-tools): do not edit."""
