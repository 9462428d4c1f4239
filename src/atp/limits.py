"""Every input limit of the engine in one place, each enforced at the edge with INVALID_ARGUMENT."""

from __future__ import annotations

# Bytes (UTF-8) in any id: reservation, line, request, hold, supply, node, SKU, region. An id
# is printable characters only (spaces inside it are fine), neither blank nor with
# whitespace at either end (validation.id_problem).
id_bytes_max = 128
# Bytes (UTF-8) in free text: movement and hold reasons.
reason_bytes_max = 1024
# Lines in one reservation or promise request; movements in one AdjustStock; SKUs asked for
# in one GetAvailability; lanes of one node.
lines_max = 500
# Units in one quantity field, and in each quantity of a position: on_hand (stock movements,
# receipts) and open inbound (supply upserts) each stay within it.
quantity_max = 10**12
# Substitute SKUs listed on one order or reservation line.
substitutes_max = 10
# A HELD reservation's time to live.
ttl_seconds_max = 7 * 24 * 3600
# Days of handling at a node or transit on a lane.
days_max = 365
# Days ahead a requested ship date or expected supply date may lie.
horizon_days_max = 3660
# Requests in one ReserveBatch. The batch is bounded by message size too, long before
# 1,000 x 500 lines (about 15 MB): with short ids (ORD-2026-00000001, line 1..500,
# SKU-000123, DC-EU-01) a line takes ~31 bytes of request, so ~135,000 lines fit in
# message_bytes_max (~10,000 with 128-byte ids); and each answered line takes ~49 bytes,
# so a client with gRPC's default 4 MiB receive limit can read the answer of at most
# ~85,000 such lines (a larger batch is applied, but its answer is refused on arrival).
batch_requests_max = 1000
# Bytes in one request message: gRPC refuses a larger one before the server's code sees it,
# with RESOURCE_EXHAUSTED "Received message larger than max (N vs. 4194304)".
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
# Unary calls in the server at once (taken up, not yet answered); more are refused with
# RESOURCE_EXHAUSTED, reason OVERLOADED and a RetryInfo (atpd --concurrent-rpcs-max).
concurrent_rpcs_max = 1000
# Calls grpc core may hold before the event loop takes them up. Beyond it grpc drops calls
# with a bare CANCELLED, as its default of 1,000 did under a burst of 2,000. Measured at
# ~15 KB each: ~150 MB at the bound.
rpc_backlog_max = 10_000

# ----- In memory ------------------------------------------------------------------------------
# What the ledger keeps in memory is live state only, each collection bounded by what it
# holds live, not by history (closed reservations, ended holds and idempotency records leave
# memory once durable, and the store's retention purges them):
# - nodes, positions (and their indexes by SKU and by node), supplies: what the operator
#   defines; every position holds at most its open lines, and a dated delta per distinct day
#   (bounded by horizon_days_max).
# - open reservations (and the indexes of them by state, expiry, backorder, at-risk line):
#   bounded by the admission of new ones: each HELD one expires within ttl_seconds_max, and
#   COMMITTED ones leave on fulfilment or release.
# - active holds (and their index by position): what the operator places.
# - changes not yet durable, and the closed reservations, ended holds and idempotency
#   records among them: at most pending_mutations_max commands' worth.
# - the event hub's backlog per Watch stream (engine.events): watch_queue_events_max each (a
#   watcher that falls further behind is ended with RESOURCE_EXHAUSTED and resumes from the
#   journal); watchers are calls, bounded like any (concurrent_rpcs_max, rpc_backlog_max).
# - the replication log (engine.replication): replication_log_batches_max batches and
#   replication_log_bytes_max bytes at most.
# - caches: dates and policies as messages, ISO dates, routes by region: lru_caches of at
#   most 4,096 entries, and one routes entry per region (cleared when a node changes).
# - delivery counters for metrics (ledger.delivery_measures.DeliveryTally): one series per
#   channel for the first metric_channels_max distinct channels; later ones count as "other".
metric_channels_max = 100
# Committed batches the leader keeps in memory for followers to stream, at most this many
# and this many bytes (a follower further behind starts from a snapshot).
replication_log_batches_max = 10_000
replication_log_bytes_max = 256 * 1024 * 1024
# Events buffered for one Watch stream before it is ended as lagging.
watch_queue_events_max = 10_000
# The audit after every command recounts a touched position's reserved and allocated units
# from its open lines on a budget: each touch earns this many lines of recount, and the
# position is recounted once its earnings cover its lines. Positions with at most this many
# lines are recounted after every command that touches them; one with 16 lines every 4th
# touch, one with 64 every 16th, any larger one in proportion, so a hot position costs the
# writer a bounded recount per command (the O(days) checks run on every touch; the full
# check, Ledger.check_invariants and `atpctl db verify`, recounts everything). 4, not 16:
# in a busy ledger each line recounted is a cache miss or two, and at 16 the recount was
# ~19% of a saturated writer's samples (py-spy under bench.writer_cap; bench/README.md).
audit_lines_per_touch = 4

# Journal events a gateway process keeps in memory for Watch (`--gateway-journal-events`):
# a Watch from before them is replayed by the writer. ~40 MB a gateway at ~400 bytes an event.
gateway_journal_events = 100_000
