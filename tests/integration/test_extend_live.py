"""Reservations.Extend and expected_version against a real atpd: the expiry moves and is
announced, workers racing on one version see exactly one winner, and both the new expiry
and the version survive kill -9."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest

from atp.client import AtpError, Client
from atp.v1 import common_pb2
from tests.support.atpd import AtpdProcess

pytestmark = pytest.mark.integration

HELD = common_pb2.Reservation.State.HELD
WORKERS = 8


@pytest.fixture(scope="module")
def atpd(tmp_path_factory: pytest.TempPathFactory, gateways: int) -> Iterator[AtpdProcess]:
    """One atpd for the module (its tests use ids of their own), one start per mode."""
    data = tmp_path_factory.mktemp("extend") / "data"
    with AtpdProcess(data, "--sync", "on", gateways=gateways) as server:
        yield server


@pytest.fixture
def client(atpd: AtpdProcess) -> Iterator[Client]:
    with Client(atpd.target, timeout_s=10) as connected:
        connected.upsert_node(node_id="DC1")
        connected.adjust_stock([{"sku": "A", "node_id": "DC1", "type": "RECEIPT",
                                 "quantity": 1000}])
        yield connected


def reserve(client: Client, reservation_id: str, ttl_seconds: int = 60) -> common_pb2.Reservation:
    return client.reserve(reservation_id, [{"line_id": "l1", "sku": "A", "quantity": 2,
                                            "node_id": "DC1"}], ttl_seconds=ttl_seconds)


def test_extend_moves_the_expiry_bumps_the_version_and_is_announced(client: Client) -> None:
    reserved = reserve(client, "o1", ttl_seconds=60)
    extended = client.extend("o1", ttl_seconds=3600, request_id="e1")
    assert extended.state == HELD
    assert extended.expire_time.seconds >= reserved.expire_time.seconds + 3500
    assert (reserved.version, extended.version) == (1, 2)
    assert client.get_reservation("o1").version == 2
    events = list(client.watch(types=["RESERVATION_EXTENDED"], reservation_id="o1",
                               stop_at_head=True))
    assert len(events) == 1
    assert events[0].data["ttl_seconds"] == 3600
    assert events[0].data["expire_time"].endswith("Z")


def test_a_stale_version_is_failed_precondition_with_both_versions(client: Client) -> None:
    reserve(client, "o2")
    client.extend("o2", ttl_seconds=600)
    with pytest.raises(AtpError) as refused:
        client.commit("o2", expected_version=1)
    assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.reason == "VERSION_MISMATCH"
    assert refused.value.metadata == {"reservation_id": "o2", "version": "2",
                                      "expected_version": "1"}
    assert client.get_reservation("o2").state == HELD


def test_workers_racing_on_one_version_have_exactly_one_winner(client: Client) -> None:
    """Each worker read version 1, then commits, releases or extends conditionally on it, all
    at once: one acts, every other is refused VERSION_MISMATCH, whatever the mix."""
    for round_number in range(5):
        reservation_id = f"race-{round_number}"
        version = reserve(client, reservation_id).version
        start = threading.Barrier(WORKERS)
        results: list[str] = []

        def worker(index: int, reservation_id: str = reservation_id,
                   start: threading.Barrier = start) -> None:
            action = ("commit", "release", "extend")[index % 3]
            request_id = f"{reservation_id}-{index}"
            start.wait()
            try:
                if action == "commit":
                    client.commit(reservation_id, request_id, expected_version=version)
                elif action == "release":
                    client.release(reservation_id, request_id=request_id,
                                   expected_version=version)
                else:
                    client.extend(reservation_id, 600, request_id, expected_version=version)
                results.append(action)
            except AtpError as error:
                results.append(error.reason)

        threads = [threading.Thread(target=worker, args=(index,)) for index in range(WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        winners = [result for result in results if result in ("commit", "release", "extend")]
        assert len(results) == WORKERS
        assert len(winners) == 1, results
        assert results.count("VERSION_MISMATCH") == WORKERS - 1, results
        final = client.get_reservation(reservation_id)
        assert final.version == version + 1
        expected_state = {"commit": "COMMITTED", "release": "RELEASED", "extend": "HELD"}
        assert common_pb2.Reservation.State.Name(final.state) == expected_state[winners[0]]


def test_an_acknowledged_extend_survives_kill_9(atpd: AtpdProcess, client: Client) -> None:
    reserve(client, "o3", ttl_seconds=2)
    extended = client.extend("o3", ttl_seconds=3600, request_id="e3")
    atpd.kill()
    atpd.restart()
    with Client(atpd.target, timeout_s=10) as again:
        after = again.get_reservation("o3")
        assert after.state == HELD, "the reservation expired at its old time"
        assert after.expire_time == extended.expire_time
        assert after.version == extended.version
        # The same request id once more is a replay, not a second extension.
        replay = again.extend("o3", ttl_seconds=3600, request_id="e3")
        assert (replay.expire_time, replay.version) == (extended.expire_time, extended.version)
