"""`atpd --gateways 2 --sync-replicas 1`: the gateways follow the writer but are no replicas
(a write waits for a real follower), an external `atpd --follow` follows the deployment
through its public port, and a write through a gateway is answered only once that follower
has stored it."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from atp.v1 import replication_pb2, replication_pb2_grpc
from tests.gateway.support import GATEWAYS, channels, gateway_atpd
from tests.integration.helpers import (
    CALL_TIMEOUT,
    Api,
    Code,
    get_reservation,
    line,
    reserve_request,
    stocked,
    wait_for,
)
from tests.support.atpd import AtpdProcess

pytestmark = [pytest.mark.integration, pytest.mark.crash]

SYNC_TIMEOUT_S = 2
WRITES = 8


def status(channel: grpc.Channel) -> replication_pb2.ReplicationStatus:
    answer: replication_pb2.ReplicationStatus = replication_pb2_grpc.ReplicationStub(
        channel).Status(replication_pb2.ReplicationStatusRequest(), timeout=CALL_TIMEOUT)
    return answer


def test_a_write_through_a_gateway_returns_once_a_follower_holds_it(tmp_path: Path) -> None:
    server = gateway_atpd(tmp_path / "data", "--sync-replicas", "1", "--sync-timeout",
                          f"{SYNC_TIMEOUT_S}s").start()
    try:
        api = Api(server.channel())
        # No replica yet (the gateways do not count): a write is applied, and not confirmed.
        with pytest.raises(grpc.RpcError) as unconfirmed:
            stocked(api, 1000)
        assert unconfirmed.value.code() is Code.UNAVAILABLE  # type: ignore[attr-defined]
        assert len(status(api.channel).followers) == GATEWAYS
        with AtpdProcess(tmp_path / "follower", "--follow", server.target) as follower:
            follower_channel = follower.channel()
            wait_for(lambda: len(status(api.channel).followers) == GATEWAYS + 1,
                     timeout_s=30)
            sku, node = stocked(api, 1000)
            for channel in channels(server, WRITES):  # through each gateway
                request = reserve_request(None, [line("l1", sku, node, 1)])
                _, call = Api(channel).reservations.Reserve.with_call(
                    request, timeout=CALL_TIMEOUT)
                sequence = int(dict(call.trailing_metadata())["atp-commit-sequence"])
                # Answered: the follower holds it already, without any wait.
                assert status(follower_channel).commit >= sequence
                channel.close()
            held = wait_for(lambda: _reservation(follower_channel, request.reservation_id),
                            timeout_s=30)
            assert held.reservation_id == request.reservation_id
            followers = {entry.follower_id for entry in status(api.channel).followers}
            assert {f"gateway-{index}" for index in range(GATEWAYS)} < followers
            follower_channel.close()
    finally:
        assert server.stop() == 0


def _reservation(channel: grpc.Channel, reservation_id: str) -> object:
    try:
        return get_reservation(Api(channel), reservation_id)
    except grpc.RpcError:
        return None
