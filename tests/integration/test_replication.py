"""A follower atpd (`--follow`) streams its leader's committed batches into its own LMDB and
memory: it serves the same reads, refuses writes with NOT_LEADER naming the leader, resumes
after a restart and after kill -9, and its data passes `atpctl db verify`."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from atp.client import Client
from atp.persistence.verify import verify
from atp.v1 import (
    common_pb2,
    events_pb2,
    events_pb2_grpc,
    inventory_pb2,
    reservations_pb2,
)
from tests.integration.helpers import (
    Api,
    Code,
    expect_error,
    line,
    reserve,
    reserve_request,
    snapshot,
    stocked,
    uid,
    wait_for,
)
from tests.support.atpd import AtpdProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.one_process(
    reason="followers: --gateways refuses --follow (README, Gateways); a leader in gateway "
    "mode is followed in test_tls, test_authorization and test_allocation_policy_live, and "
    "with --sync-replicas in tests/gateway")]


@pytest.fixture
def leader(tmp_path: Path) -> Iterator[AtpdProcess]:
    with AtpdProcess(tmp_path / "leader") as process:
        yield process


def follower_of(leader: AtpdProcess, tmp_path: Path, name: str = "follower") -> AtpdProcess:
    return AtpdProcess(tmp_path / name, "--follow", leader.target, "--advertise", f"{name}:1")


def caught_up(leader: Api, follower: Api, skus: list[str]) -> bool:
    """Whether the follower reads as the leader does (NOT_FOUND until the SKU arrives)."""
    try:
        return snapshot(leader, skus) == snapshot(follower, skus)
    except grpc.RpcError as error:
        if error.code() is not Code.NOT_FOUND:  # type: ignore[attr-defined]
            raise
        return False


def test_a_follower_serves_what_the_leader_committed_and_refuses_writes(
    leader: AtpdProcess, tmp_path: Path
) -> None:
    leader_api = Api(leader.channel())
    sku, node = stocked(leader_api, 10)
    held = reserve(leader_api, line("l1", sku, node, 3))
    with follower_of(leader, tmp_path) as follower:
        follower_api = Api(follower.channel())
        wait_for(lambda: caught_up(leader_api, follower_api, [sku]), timeout_s=15)
        # Live: a write on the leader reaches the follower without a restart.
        committed = reserve(leader_api, line("l1", sku, node, 2), commit=True)
        wait_for(lambda: caught_up(leader_api, follower_api, [sku]), timeout_s=15)
        got = follower_api.reservations.GetReservation(
            reservations_pb2.GetReservationRequest(reservation_id=committed.reservation_id))
        assert got == committed
        failure = expect_error(
            follower_api.reservations.Reserve, reserve_request(None, [line("l1", sku, node, 1)]),
            Code.FAILED_PRECONDITION, "NOT_LEADER")
        assert failure.error_info is not None
        assert failure.error_info.metadata["leader"] == leader.target
        # The journal came along: Watch on the follower shows the leader's events.
        events = events_pb2_grpc.EventsStub(follower.channel())
        stream = events.Watch(events_pb2.WatchRequest(reservation_id=held.reservation_id),
                              timeout=10)
        first = next(iter(stream))
        assert first.type == "RESERVATION_CREATED"
        stream.cancel()
        follower_api.close()
    leader_api.close()


def test_a_follower_resumes_after_a_restart_and_after_kill_9(
    leader: AtpdProcess, tmp_path: Path
) -> None:
    leader_api = Api(leader.channel())
    sku, node = stocked(leader_api, 1000)
    follower = follower_of(leader, tmp_path).start()
    try:
        follower_api = Api(follower.channel())
        for _ in range(20):
            reserve(leader_api, line("l1", sku, node, 1))
        wait_for(lambda: caught_up(leader_api, follower_api, [sku]), timeout_s=15)
        follower_api.close()
        assert follower.stop() == 0
        for _ in range(20):  # while the follower is down
            reserve(leader_api, line("l1", sku, node, 1))
        follower.start()
        follower_api = Api(follower.channel())
        wait_for(lambda: caught_up(leader_api, follower_api, [sku]), timeout_s=15)
        for index in range(60):  # kill -9 while batches stream in
            reserve(leader_api, line("l1", sku, node, 1))
            if index == 30:
                follower_api.close()
                follower.kill()
        assert verify(tmp_path / "follower") == []
        follower.start()
        follower_api = Api(follower.channel())
        wait_for(lambda: caught_up(leader_api, follower_api, [sku]), timeout_s=15)
        follower_api.close()
    finally:
        if follower.process is not None:
            follower.stop()
    leader_api.close()
    assert verify(tmp_path / "follower") == []


def test_with_sync_replicas_a_write_is_answered_only_once_a_follower_holds_it(
    tmp_path: Path,
) -> None:
    with AtpdProcess(tmp_path / "leader", "--sync-replicas", "1", "--sync-timeout", "1s") as leader:
        leader_api = Api(leader.channel())
        # No follower yet: the write is on the leader but not confirmed: UNAVAILABLE.
        failure = expect_error(
            leader_api.inventory.UpsertNode, inventory_pb2.UpsertNodeRequest(
                node=common_pb2.Node(node_id="N1")), Code.UNAVAILABLE)
        assert "synchronous replica" in failure.message
        follower = follower_of(leader, tmp_path).start()
        try:
            follower_api = Api(follower.channel())
            sku, node = stocked(leader_api, 100)  # answered: the follower holds it already
            for _ in range(30):
                answered = reserve(leader_api, line("l1", sku, node, 1))
                # No waiting: what the leader acknowledged, the follower already holds.
                held = follower_api.reservations.GetReservation(
                    reservations_pb2.GetReservationRequest(
                        reservation_id=answered.reservation_id), timeout=5)
                assert held == answered
            acknowledged = snapshot(leader_api, [sku])
            leader.kill()  # the leader's machine is gone: nothing acknowledged is lost
            assert snapshot(follower_api, [sku]) == acknowledged
            follower_api.close()
        finally:
            if follower.process is not None:
                follower.stop()
            leader_api.close()


def test_a_client_reads_its_own_write_on_a_follower_by_its_commit_sequence(
    leader: AtpdProcess, tmp_path: Path
) -> None:
    leader_api = Api(leader.channel())
    sku, node = stocked(leader_api, 50)
    with follower_of(leader, tmp_path) as follower:
        follower_api = Api(follower.channel())
        last = 0
        for _ in range(10):
            written, call = leader_api.reservations.Reserve.with_call(
                reserve_request(None, [line("l1", sku, node, 1)]), timeout=10)
            commit = int(dict(call.trailing_metadata())["atp-commit-sequence"])
            assert commit > last  # each write its own, later, commit
            last = commit
            read = follower_api.reservations.GetReservation(
                reservations_pb2.GetReservationRequest(
                    reservation_id=written.reservation_id, min_sequence=commit), timeout=10)
            assert read == written  # at once, with no polling: the same message
        batch = leader_api.reservations.ReserveBatch(reservations_pb2.ReserveBatchRequest(
            requests=[reserve_request(None, [line("l1", sku, node, 1)])]), timeout=10)
        assert batch.commit_sequence > last
        # The leader makes every commit: one it has not made is a bad request, not a wait.
        failure = expect_error(
            leader_api.reservations.GetReservation,
            reservations_pb2.GetReservationRequest(
                reservation_id=written.reservation_id, min_sequence=batch.commit_sequence + 1),
            Code.INVALID_ARGUMENT)
        assert failure.bad_request is not None
        assert failure.bad_request.field_violations[0].field == "min_sequence"
        # A commit nobody has made yet: the read waits until just before its deadline, then
        # says this member is behind (UNAVAILABLE: retry, or read elsewhere).
        with pytest.raises(grpc.RpcError) as raised:
            follower_api.reservations.GetReservation(
                reservations_pb2.GetReservationRequest(
                    reservation_id=written.reservation_id, min_sequence=last + 1000),
                timeout=2)
        assert raised.value.code() is Code.UNAVAILABLE  # type: ignore[attr-defined]
        assert "not yet" in raised.value.details()  # type: ignore[attr-defined]
        follower_api.close()
    leader_api.close()


def test_cluster_status_shows_roles_commits_and_each_followers_lag(
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    with AtpdProcess(tmp_path / "leader", "--metrics-port", str(metrics_port)) as leader:
        leader_api = Api(leader.channel())
        sku, node = stocked(leader_api, 10)
        with follower_of(leader, tmp_path, "replica-a") as follower:
            follower_api = Api(follower.channel())
            reserve(leader_api, line("l1", sku, node, 1))
            wait_for(lambda: caught_up(leader_api, follower_api, [sku]), timeout_s=15)

            def leader_status() -> dict[str, Any]:
                return atpctl_json(leader.target, "cluster", "status")

            status = wait_for(lambda: (s := leader_status())["followers"] and s["followers"][0][
                "acknowledged_commit"] == s["commit"] and s, timeout_s=10)
            assert status["role"] == "leader"
            assert status["followers"][0]["follower_id"] == "replica-a:1"
            assert status["followers"][0]["connected"] is True
            assert status["followers"][0]["lag_commits"] == "0"  # caught up
            mine = atpctl_json(follower.target, "cluster", "status")
            assert mine["role"] == "follower" and mine["leader"] == leader.target
            assert mine["connected"] is True and mine["commit"] == status["commit"]
            text = urllib.request.urlopen(
                f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
            assert 'atp_replication_role{role="leader"} 1.0' in text
            assert 'atp_replication_lag_commits{follower="replica-a:1"} 0.0' in text
            follower_api.close()
        # The follower is gone: the leader shows it disconnected, its lag growing with writes.
        reserve(leader_api, line("l1", sku, node, 1))
        after = wait_for(lambda: (s := atpctl_json(leader.target, "cluster", "status"))[
            "followers"][0]["connected"] is False and s, timeout_s=10)
        assert after["followers"][0]["lag_commits"] == "1"
        assert after["followers"][0]["lag_seconds"] > 0
        leader_api.close()


def atpctl_json(target: str, *command: str) -> Any:
    """`atpctl --json` against a target, as an operator runs it."""
    completed = subprocess.run(
        [sys.executable, "-m", "atp.cli", "--target", target, "--json", *command],
        capture_output=True, text=True, timeout=30, check=True)
    return json.loads(completed.stdout)


def test_a_client_given_every_member_writes_to_the_leader_and_reads_on_without_one(
    leader: AtpdProcess, tmp_path: Path
) -> None:
    leader_api = Api(leader.channel())
    sku, node = stocked(leader_api, 10)
    with follower_of(leader, tmp_path) as follower:
        # The follower first: its NOT_LEADER refusal sends the write to the leader it names.
        with Client(f"{follower.target},{leader.target}", timeout_s=10) as client:
            written = client.reserve(
                uid("multi"), [{"line_id": "l1", "sku": sku, "quantity": 2, "node_id": node}])
            assert client.target == leader.target
            follower_api = Api(follower.channel())
            wait_for(lambda: caught_up(leader_api, follower_api, [sku]), timeout_s=15)
            follower_api.close()
        leader_api.close()
        leader.kill()
        # The leader gone: a read moves on to the next member after UNAVAILABLE.
        with Client(f"{leader.target},{follower.target}", timeout_s=10) as client:
            read = client.get_reservation(written.reservation_id)
            assert read == written and client.target == follower.target


def test_a_watch_given_every_member_goes_on_from_the_next_member_after_its_own_dies(
    leader: AtpdProcess, tmp_path: Path
) -> None:
    leader_api = Api(leader.channel())
    sku, node = stocked(leader_api, 100)
    with follower_of(leader, tmp_path) as follower:
        before = [reserve(leader_api, line("l1", sku, node, 1))
                  for _ in range(3)]
        with Client(f"{follower.target},{leader.target}", timeout_s=10) as client:
            events = client.watch(0, sku=sku, types=["RESERVATION_CREATED"])
            seen = [next(events) for _ in range(len(before))]  # from the follower
            assert client.target == follower.target
            follower.kill()
            after = [reserve(leader_api, line("l1", sku, node, 1))
                     for _ in range(3)]
            seen += [next(events) for _ in range(len(after))]  # from the leader, resumed
            assert client.target == leader.target
            events.close()  # type: ignore[attr-defined]
    sequences = [event.sequence for event in seen]
    assert sequences == sorted(set(sequences)), "no event twice, none out of order"
    created = [event.reservation_id for event in seen]
    assert created == [r.reservation_id for r in before + after]
    leader_api.close()
