"""A follower that the leader's replication log cannot feed (a new one, with the leader keeping
only its last 5 batches) bootstraps from a snapshot of the leader's store, then serves the
same reads and streams on; one killed with -9 in the middle of a snapshot takes a new one
when it restarts, and its data passes `atpctl db verify`."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import grpc
import pytest

from atp.persistence.verify import verify
from atp.store import LmdbStore, StoreError
from atp.v1 import (
    availability_pb2,
    common_pb2,
    events_pb2,
    events_pb2_grpc,
    inventory_pb2,
    replication_pb2,
    replication_pb2_grpc,
    reservations_pb2,
)
from tests.integration.helpers import (
    Api,
    Code,
    Movement,
    adjust,
    commit,
    get_reservation,
    line,
    movement,
    reserve,
    reserve_request,
    stocked,
    uid,
    wait_for,
)
from tests.integration.test_replication import caught_up
from tests.support.atpd import AtpdProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.one_process(
    reason="followers: --gateways refuses --follow (README, Gateways)")]

LOG_BATCHES = "5"


def follower_of(leader: AtpdProcess, data_dir: Path, *extra: str,
                env: dict[str, str] | None = None) -> AtpdProcess:
    return AtpdProcess(data_dir, "--follow", leader.target, "--advertise", "follower:1", *extra,
                       env=env)


def write_history(api: Api, rounds: int = 12, bulk: int = 2000) -> tuple[list[str], str, list[str]]:
    """Far more batches than the leader's log keeps, of every kind of write: reservations
    (some committed), stock movements, holds placed and released; and `bulk` reservations in
    a few large batches, so that a snapshot takes several chunks. (SKUs, the node of the
    first, reservation ids.)"""
    sku, node = stocked(api, 100_000)
    other_sku, other_node = stocked(api, 50)
    reservation_ids = []
    for number in range(rounds):
        held = reserve(api, line("l1", sku, node, 2), line("l2", other_sku, other_node, 1))
        reservation_ids.append(held.reservation_id)
        if number % 3 == 0:
            commit(api, held.reservation_id)
        adjust(api, movement(other_sku, other_node, Movement.RECEIPT, 3))
        hold_id = uid("hold")
        api.inventory.PlaceHold(inventory_pb2.PlaceHoldRequest(hold=common_pb2.Hold(
            hold_id=hold_id, sku=sku, node_id=node, quantity=1)), timeout=10)
        if number % 2 == 0:
            api.inventory.ReleaseHold(inventory_pb2.ReleaseHoldRequest(hold_id=hold_id),
                                      timeout=10)
    for _ in range(bulk // 500):
        api.reservations.ReserveBatch(reservations_pb2.ReserveBatchRequest(requests=[
            reserve_request(None, [line("l1", sku, node, 1)]) for _ in range(500)]), timeout=30)
    return [sku, other_sku], node, reservation_ids


def settled(leader: Api, follower: Api, skus: list[str]) -> bool:
    """caught_up, also while the follower refuses reads as it installs a snapshot."""
    try:
        return caught_up(leader, follower, skus)
    except grpc.RpcError as error:
        if error.code() is not Code.UNAVAILABLE:  # type: ignore[attr-defined]
            raise
        return False


def watched(target: str) -> list[tuple[int, str, str]]:
    """Every retained event of a member, from sequence 0 to its head."""
    with grpc.insecure_channel(target) as channel:
        stream = events_pb2_grpc.EventsStub(channel).Watch(
            events_pb2.WatchRequest(after_sequence=0, stop_at_head=True), timeout=20)
        return [(event.sequence, event.type, event.reservation_id) for event in stream]


def metrics_text(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def test_a_new_follower_bootstraps_from_a_snapshot_then_streams_new_writes(
    tmp_path: Path,
) -> None:
    leader_metrics, follower_metrics = free_port(), free_port()
    with AtpdProcess(tmp_path / "leader", "--replication-log-batches", LOG_BATCHES,
                     "--metrics-port", str(leader_metrics)) as leader:
        leader_api = Api(leader.channel())
        skus, node, reservation_ids = write_history(leader_api)
        with follower_of(leader, tmp_path / "follower",
                         "--metrics-port", str(follower_metrics)) as follower:
            follower_api = Api(follower.channel())
            wait_for(lambda: settled(leader_api, follower_api, skus), timeout_s=15)
            for reservation_id in reservation_ids:
                assert get_reservation(follower_api, reservation_id) == get_reservation(
                    leader_api, reservation_id)
            assert 'atp_replication_snapshots_total{direction="sent"} 1.0' in metrics_text(
                leader_metrics)
            assert 'atp_replication_snapshots_total{direction="received"} 1.0' in metrics_text(
                follower_metrics)
            # The journal came with the snapshot: Watch from 0 shows what the leader's does.
            assert watched(follower.target) == watched(leader.target)
            # Then the follower streams what the leader commits after the snapshot.
            for _ in range(8):
                written, call = leader_api.reservations.Reserve.with_call(
                    reserve_request(None, [line("l1", skus[0], node, 1)]), timeout=10)
                sequence = int(dict(call.trailing_metadata())["atp-commit-sequence"])
                read = follower_api.reservations.GetReservation(
                    reservations_pb2.GetReservationRequest(
                        reservation_id=written.reservation_id, min_sequence=sequence),
                    timeout=10)
                assert read == written
            wait_for(lambda: settled(leader_api, follower_api, skus), timeout_s=15)
            assert watched(follower.target) == watched(leader.target)
            follower_api.close()
        leader_api.close()
    assert verify(tmp_path / "follower") == []


def restore_incomplete(data_dir: Path) -> bool:
    """Whether the data directory holds an unfinished restore (read beside its atpd)."""
    try:
        with LmdbStore(data_dir, readonly=True) as store:
            return store.restore_incomplete()
    except StoreError:  # not created yet
        return False


def test_a_follower_killed_in_the_middle_of_a_snapshot_takes_a_new_one_when_restarted(
    tmp_path: Path,
) -> None:
    with AtpdProcess(tmp_path / "leader", "--replication-log-batches", LOG_BATCHES) as leader:
        leader_api = Api(leader.channel())
        skus, _, _ = write_history(leader_api, rounds=4)
        data_dir = tmp_path / "follower"
        slow = follower_of(leader, data_dir, env={"ATP_TEST_SNAPSHOT_CHUNK_DELAY_S": "3"})
        slow.start()
        try:
            wait_for(lambda: restore_incomplete(data_dir), timeout_s=10, interval_s=0.02)
            slow_api = Api(slow.channel())
            with pytest.raises(grpc.RpcError) as refused:  # mid-snapshot, reads are refused
                slow_api.availability.GetAvailability(
                    availability_pb2.GetAvailabilityRequest(skus=skus), timeout=5)
            assert refused.value.code() is Code.UNAVAILABLE  # type: ignore[attr-defined]
            slow_api.close()
        finally:
            slow.kill()
        assert restore_incomplete(data_dir)
        assert "interrupted" in verify(data_dir)[0]
        with follower_of(leader, data_dir) as follower:
            follower_api = Api(follower.channel())
            wait_for(lambda: settled(leader_api, follower_api, skus), timeout_s=15)
            follower_api.close()
        leader_api.close()
    assert not restore_incomplete(data_dir)
    assert verify(data_dir) == []
    assert "snapshot restore that was interrupted" in slow.log_path.read_text()


def test_a_follower_refuses_to_serve_snapshots(tmp_path: Path) -> None:
    with AtpdProcess(tmp_path / "leader") as leader, follower_of(
        leader, tmp_path / "follower"
    ) as follower, grpc.insecure_channel(follower.target) as channel:
        stub = replication_pb2_grpc.ReplicationStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.Snapshot(replication_pb2.SnapshotRequest(follower_id="x:1"), timeout=10))
        assert refused.value.code() is Code.FAILED_PRECONDITION  # type: ignore[attr-defined]
        assert leader.target in refused.value.details()  # type: ignore[attr-defined]


def test_a_running_follower_left_behind_takes_a_snapshot_and_its_watchers_resume(
    tmp_path: Path,
) -> None:
    """The leader restarts having committed, while out of the follower's reach, more than
    its (then empty) log holds: the follower, still running, replaces its memory."""
    leader_address = f"127.0.0.1:{free_port()}"
    leader_dir = tmp_path / "leader"
    # A short grace: the follower's stream would hold a stopping leader for the default 5 s.
    options = ("--replication-log-batches", LOG_BATCHES, "--grace", "0.2")
    with AtpdProcess(leader_dir, "--listen", leader_address, *options) as leader:
        leader_api = Api(leader.channel())
        skus, node, _ = write_history(leader_api, rounds=3, bulk=0)
        follower = follower_of(leader, tmp_path / "follower").start()
        follower_api = Api(follower.channel())
        wait_for(lambda: settled(leader_api, follower_api, skus), timeout_s=15)
        leader_api.close()
    watch_channel = grpc.insecure_channel(follower.target)
    live = events_pb2_grpc.EventsStub(watch_channel).Watch(
        events_pb2.WatchRequest(after_sequence=0), timeout=30)
    seen = [next(live).sequence]
    try:
        with AtpdProcess(leader_dir, *options) as elsewhere:
            api = Api(elsewhere.channel())  # where the follower does not look
            for _ in range(10):
                reserve(api, line("l1", skus[0], node, 1))
            api.close()
        with AtpdProcess(leader_dir, "--listen", leader_address, *options) as leader:
            leader_api = Api(leader.channel())
            wait_for(lambda: settled(leader_api, follower_api, skus), timeout_s=15)
            with pytest.raises(grpc.RpcError) as ended:
                seen += [event.sequence for event in live]
            assert ended.value.code() is Code.UNAVAILABLE  # type: ignore[attr-defined]
            assert "watch again" in ended.value.details()  # type: ignore[attr-defined]
            resumed = events_pb2_grpc.EventsStub(watch_channel).Watch(
                events_pb2.WatchRequest(after_sequence=seen[-1], stop_at_head=True), timeout=20)
            seen += [event.sequence for event in resumed]
            assert seen == [sequence for sequence, _, _ in watched(leader.target)]
            leader_api.close()
    finally:
        watch_channel.close()
        follower_api.close()
        follower.stop()
    assert "taking a snapshot" in follower.log_path.read_text()
    assert verify(tmp_path / "follower") == []
