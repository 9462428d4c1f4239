"""Every input limit of the engine in one place, each enforced at the edge with INVALID_ARGUMENT."""

from __future__ import annotations

# Bytes (UTF-8) in any id: reservation, line, request, hold, supply, node, SKU, region.
id_bytes_max = 128
# Bytes (UTF-8) in free text: movement and hold reasons.
reason_bytes_max = 1024
# Lines in one reservation or promise request; movements in one AdjustStock; SKUs asked for
# in one GetAvailability; lanes of one node.
lines_max = 500
# Units in one quantity field (and on any position).
quantity_max = 10**12
# A HELD reservation's time to live.
ttl_seconds_max = 7 * 24 * 3600
# Days of handling at a node or transit on a lane.
days_max = 365
# Days ahead a requested ship date or expected supply date may lie.
horizon_days_max = 3660
# Requests in one ReserveBatch.
batch_requests_max = 1000
# Bytes in one request message (the gRPC server refuses larger ones).
message_bytes_max = 4 * 1024 * 1024
# Items in one page of a List call, and the default when page_size is 0.
page_size_max = 1000
page_size_default = 100
# Characters of a node kind.
node_kind_chars_max = 32
# Mutations waiting for the writer before new ones are refused with RESOURCE_EXHAUSTED.
pending_mutations_max = 20_000
# Messages of one ReserveStream applied but not yet answered; the stream stops reading beyond.
stream_in_flight_max = 1000
