"""The post-run audit: recompute every position from its records; any oversell or drift fails.

Steps (each problem found is one string; the audit passes when there are none):
1. SIGTERM the server: it drains, commits a final batch and must exit 0.
2. `atp.persistence.verify.verify(data_dir)`: every record decodes and every derived quantity
   (allocated, reserved, held, inbound) equals the sum over its records.
3. Offline ledger (`ledger_from_records` over the LMDB records), for every position:
   on_hand >= 0, and for every position the bench stocked (stock only ever grew, except by
   fulfilment) reserved + allocated + held <= on_hand + inbound; every stocked position exists.
4. Durability of acknowledgements: every reservation the server acknowledged is stored, and
   on_hand went down by at least the units whose Fulfill was acknowledged.
5. A restarted server (same data dir) answers GetAvailability for every stocked SKU with the
   same quantities as the offline ledger, available >= 0 and no position short; it must stop
   cleanly again.
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from atp.persistence import ledger_from_records
from atp.persistence.verify import verify
from atp.store import LmdbStore
from atp.v1 import availability_pb2, availability_pb2_grpc
from bench.server import ServerProcess

_MAX_LISTED = 50  # problems listed verbatim; the rest are counted
_QUANTITIES = ("on_hand", "allocated", "reserved", "held", "inbound")


def audit(
    server: ServerProcess,
    stocked: dict[tuple[str, str], int],
    acked: dict[str, int],
    *,
    restart: bool = True,
) -> dict[str, Any]:
    started = time.monotonic()
    problems: list[str] = []
    report: dict[str, Any] = {}

    exit_code = server.stop()
    report["server_exit_code"] = exit_code
    if exit_code != 0:
        problems.append(f"server exited with code {exit_code} on SIGTERM (expected 0)")

    verify_problems = verify(server.data_dir)
    report["verify_problems"] = len(verify_problems)
    problems.extend(f"verify: {problem}" for problem in verify_problems)

    with LmdbStore(server.data_dir, readonly=True) as store:
        records = store.load()
        last_sequence = store.last_sequence()
    ledger = ledger_from_records(records, last_sequence, None)
    # Closed reservations live in their own records (within closed retention), not in memory.
    closed_stored = len(records.get("closed", {})) + len(ledger.closed)
    del records
    report["journal_last_sequence"] = last_sequence
    report["positions_stored"] = len(ledger.positions)
    report["positions_stocked"] = len(stocked)

    oversold = 0
    for (sku, node_id), position in ledger.positions.items():
        if position.on_hand < 0:
            oversold += 1
            problems.append(f"{sku} at {node_id}: on_hand {position.on_hand} < 0")
        for name in _QUANTITIES[1:]:
            if getattr(position, name) < 0:
                problems.append(f"{sku} at {node_id}: {name} {getattr(position, name)} < 0")
    on_hand_seeded = on_hand_now = 0
    for (sku, node_id), seeded in stocked.items():
        stocked_position = ledger.position(sku, node_id)
        if stocked_position is None:
            problems.append(f"{sku} at {node_id}: stocked position missing from the store")
            continue
        on_hand_seeded += seeded
        on_hand_now += stocked_position.on_hand
        demand = stocked_position.reserved + stocked_position.allocated + stocked_position.held
        supply = stocked_position.on_hand + stocked_position.inbound
        if demand > supply:
            oversold += 1
            problems.append(
                f"{sku} at {node_id}: oversold: reserved+allocated+held {demand} > "
                f"on_hand+inbound {supply}"
            )
    report["positions_oversold"] = oversold

    reservations_stored = len(ledger.reservations) + closed_stored
    report["reservations_acked"] = acked.get("reservations_acked", 0)
    report["reservations_stored"] = reservations_stored
    if reservations_stored < report["reservations_acked"]:
        problems.append(
            f"{report['reservations_acked']} reservations were acknowledged but only "
            f"{reservations_stored} are stored (acknowledged writes lost)"
        )
    shipped = on_hand_seeded - on_hand_now
    report["units_fulfilled_acked"] = acked.get("units_fulfilled_acked", 0)
    report["on_hand_shipped"] = shipped
    if shipped < report["units_fulfilled_acked"]:
        problems.append(
            f"on_hand fell by {shipped} but {report['units_fulfilled_acked']} units were "
            "acknowledged as fulfilled (acknowledged writes lost)"
        )

    if restart:
        problems.extend(_check_restarted(server, ledger, stocked, report))
    report["seconds"] = round(time.monotonic() - started, 3)
    report["problems_total"] = len(problems)
    report["problems"] = problems[:_MAX_LISTED]
    report["passed"] = not problems
    return report


def _check_restarted(
    server: ServerProcess, ledger: Any, stocked: dict[tuple[str, str], int], report: dict[str, Any]
) -> list[str]:
    """GetAvailability of every stocked SKU from a restarted server, compared to the ledger."""
    problems: list[str] = []
    started = time.monotonic()
    try:
        server.start()
    except RuntimeError as error:
        return [f"restart: {error}"]
    report["restart_seconds"] = round(time.monotonic() - started, 3)
    skus = sorted({sku for sku, _ in stocked})
    checked = short = 0
    try:
        with grpc.insecure_channel(
            server.target, options=[("grpc.max_receive_message_length", 256 << 20)]
        ) as channel:
            stub = availability_pb2_grpc.AvailabilityStub(channel)
            for index in range(0, len(skus), 500):
                request = availability_pb2.GetAvailabilityRequest(skus=skus[index:index + 500])
                for message in stub.GetAvailability(request, timeout=120).positions:
                    checked += 1
                    position = ledger.position(message.sku, message.node_id)
                    if position is None:
                        problems.append(f"restart: {message.sku} at {message.node_id} unknown "
                                        "to the offline ledger")
                        continue
                    for name in _QUANTITIES:
                        served, stored = getattr(message, name), getattr(position, name)
                        if served != stored:
                            problems.append(f"restart: {name} of {message.sku} at "
                                            f"{message.node_id} is {served}, records say {stored}")
                    if message.available < 0:
                        problems.append(f"restart: {message.sku} at {message.node_id}: "
                                        f"available {message.available} < 0")
                    if message.short:
                        short += 1
                        problems.append(f"restart: {message.sku} at {message.node_id} is short")
    except grpc.RpcError as error:
        problems.append(f"restart: GetAvailability failed: {error.code().name} {error.details()}")
    finally:
        code = server.stop()
        report["restart_exit_code"] = code
        if code != 0:
            problems.append(f"restarted server exited with code {code} on SIGTERM")
    report["restart_positions_checked"] = checked
    report["restart_positions_short"] = short
    if checked < len(stocked):
        problems.append(f"restart: {checked} positions served, {len(stocked)} stocked")
    return problems
