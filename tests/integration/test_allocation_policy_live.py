"""Allocation policies against a real atpd: the server default from --allocation-policy,
SetAllocationPolicy / GetAllocationPolicy / ListAllocationPolicies / ExplainAllocation over
gRPC and through atpctl, the at-risk marks following a policy change, the policies surviving
kill -9 and reaching a follower, and generated requests refused cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atp.client import AtpError, Client
from atp.v1 import allocation_pb2, allocation_pb2_grpc
from tests.integration.helpers import wait_for
from tests.integration.test_fuzz_requests import check_refusal, messages
from tests.support.atpd import AtpdProcess

# A server per test (they share fixed names) for allocation rules, which gateways do not
# change; a follower of a leader behind gateways is tests/gateway/test_security.py's.
pytestmark = [pytest.mark.integration, pytest.mark.one_process_for_time(
    reason="time: allocation rules on a server per test; gateways change none of them")]

Policy = allocation_pb2.AllocationPolicy
VALUE, FIFO, PRIORITY = Policy.VALUE, Policy.FIFO, Policy.PRIORITY


@pytest.fixture
def atpd(tmp_path: Path, gateways: int) -> Iterator[AtpdProcess]:
    with AtpdProcess(tmp_path / "data", "--sync", "on", "--allocation-policy",
                     "value,fifo", gateways=gateways) as server:
        yield server


@pytest.fixture
def client(atpd: AtpdProcess) -> Iterator[Client]:
    """DC1 with 10 units of W: `cheap` (6 units, value 10) then `dear` (4 units, value 90)
    reserved, then 4 units lost: 6 left for 10 ordered."""
    with Client(atpd.target, timeout_s=10) as connected:
        connected.upsert_node(node_id="DC1")
        connected.adjust_stock([{"sku": "W", "node_id": "DC1", "type": "RECEIPT",
                                 "quantity": 10}])
        for reservation_id, units, value in (("cheap", 6, 10), ("dear", 4, 90)):
            connected.reserve(reservation_id, [{"line_id": "l1", "sku": "W", "quantity": units,
                                                "node_id": "DC1", "unit_value": value}])
        connected.adjust_stock([{"sku": "W", "node_id": "DC1", "type": "SHRINKAGE",
                                 "quantity": 4}])
        yield connected


def atpctl(target: str, *arguments: str, expect: int = 0) -> str:
    """atpctl as a subprocess (this interpreter, so these sources); its stdout."""
    result = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [sys.executable, "-m", "atp.cli", "--target", target, *arguments],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == expect, (arguments, result.stdout, result.stderr)
    return result.stdout + result.stderr


def policies(client: Client) -> list[tuple[str, str, list[int]]]:
    return [(p.sku, p.node_id, list(p.criteria))
            for p in client.list_allocation_policies().policies]


def at_risk(client: Client) -> set[str]:
    return {r.reservation_id for r in client.list_reservations(at_risk=True).reservations}


def test_the_flag_sets_the_default_and_policies_move_the_at_risk_marks(
    atpd: AtpdProcess, client: Client
) -> None:
    default = client.get_allocation_policy()
    assert (list(default.criteria), default.source) == ([VALUE, FIFO], Policy.SERVER_DEFAULT)
    assert at_risk(client) == {"cheap"}  # by value: dear (90) first, 2 left for cheap's 6

    # A node policy through atpctl: first come, first served.
    out = atpctl(atpd.target, "policy", "set", "--sku", "W", "--node", "DC1",
                 "--criteria", "FIFO")
    assert "W at DC1: fifo, then ids [node policy]" in out
    assert at_risk(client) == {"dear"}
    explained = json.loads(atpctl(atpd.target, "--json", "policy", "explain", "--sku", "W",
                                  "--node", "DC1"))
    assert [(line["reservation_id"], line["at_risk"], line["decided_by"])
            for line in explained["lines"]] == [("cheap", False, ""), ("dear", True, "FIFO")]
    assert "created later" in atpctl(atpd.target, "policy", "explain", "--sku", "W",
                                     "--node", "DC1")

    # A SKU policy over gRPC; the node's still wins there.
    sku_policy = client.set_allocation_policy("W", ["priority", "value"])
    assert (sku_policy.source, list(sku_policy.criteria)) == (Policy.SKU_POLICY,
                                                              [PRIORITY, VALUE])
    assert client.get_allocation_policy("W", "DC1").source == Policy.NODE_POLICY
    listed = client.list_allocation_policies().policies
    assert [(p.sku, p.node_id, list(p.criteria)) for p in listed] == [
        ("W", "", [PRIORITY, VALUE]), ("W", "DC1", [FIFO])]

    events = list(client.watch(types=["ALLOCATION_POLICY_SET", "LINE_AT_RISK"],
                               stop_at_head=True))
    assert [(e.type, e.reservation_id) for e in events] == [
        ("LINE_AT_RISK", "cheap"), ("ALLOCATION_POLICY_SET", ""), ("LINE_AT_RISK", "dear"),
        ("ALLOCATION_POLICY_SET", "")]
    assert events[0].line_at_risk.decided_by == "VALUE"
    assert events[2].line_at_risk.decided_by == "FIFO"
    assert list(events[3].allocation_policy_set.criteria) == ["PRIORITY", "VALUE"]

    # Survives kill -9.
    atpd.kill()
    atpd.restart()
    with Client(atpd.target, timeout_s=10) as again:
        assert [(p.sku, p.node_id, list(p.criteria))
                for p in again.list_allocation_policies().policies] == [
            ("W", "", [PRIORITY, VALUE]), ("W", "DC1", [FIFO])]
        assert again.get_allocation_policy("W", "DC1").source == Policy.NODE_POLICY
        assert at_risk(again) == {"dear"}
        # Clearing the node's: the SKU's applies (priorities tie, then value: dear first).
        cleared = atpctl(atpd.target, "policy", "clear", "--sku", "W", "--node", "DC1")
        assert "[sku policy]" in cleared
        assert at_risk(again) == {"cheap"}


def test_bad_policies_are_refused_and_change_nothing(atpd: AtpdProcess, client: Client) -> None:
    with pytest.raises(AtpError) as refused:
        client.set_allocation_policy("W", ["channel_rank"])
    assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in refused.value.field_violations] == ["policy.criteria"]
    with pytest.raises(AtpError) as missing:
        client.set_allocation_policy("W", ["value"], node_id="NOWHERE")
    assert missing.value.code is grpc.StatusCode.NOT_FOUND
    with pytest.raises(AtpError) as no_position:
        client.explain_allocation("W", "NOWHERE")
    assert no_position.value.code is grpc.StatusCode.NOT_FOUND
    assert "not a criterion" in atpctl(atpd.target, "policy", "set", "--sku", "W",
                                       "--criteria", "speed", expect=2)
    assert "policy.channel_ranks" in atpctl(atpd.target, "policy", "set", "--sku", "W",
                                            "--criteria", "value", "--channel-ranks", "web",
                                            expect=1)
    assert client.list_allocation_policies().policies == []
    assert "(none)" in atpctl(atpd.target, "policy", "list")


# ----- generated requests ------------------------------------------------------------------------

POLICY_RPCS = ("SetAllocationPolicy", "GetAllocationPolicy", "ListAllocationPolicies",
               "ExplainAllocation")
SERVICE = allocation_pb2.DESCRIPTOR.services_by_name["Allocations"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(call=st.sampled_from(POLICY_RPCS).flatmap(
    lambda name: messages(SERVICE.methods_by_name[name].input_type).map(
        lambda request: (name, request))))
def test_generated_policy_requests_are_answered_or_refused_cleanly(
    atpd: AtpdProcess, client: Client, call: tuple[str, Any]
) -> None:
    """Random field values (test_fuzz_requests' generator): an answer, or a documented
    refusal with its details; a refused Set changes no policy."""
    method, request = call
    before = client.list_allocation_policies()
    with atpd.channel() as channel:
        try:
            getattr(allocation_pb2_grpc.AllocationsStub(channel), method)(request, timeout=30)
        except grpc.RpcError as error:
            check_refusal(error, f"{method}({request})")
            assert client.list_allocation_policies() == before


def test_a_follower_serves_the_leaders_policies_also_after_kill_9(
    atpd: AtpdProcess, client: Client, tmp_path: Path
) -> None:
    """Policies reach a follower with the batches that set them (and with a snapshot)."""
    client.set_allocation_policy("W", ["fifo"], node_id="DC1")
    # The leader runs in both modes; a follower is one process (--gateways refuses --follow).
    follower = AtpdProcess(tmp_path / "follower", "--follow", atpd.target,
                           "--advertise", "follower:1", gateways=0).start()
    try:
        with Client(follower.target, timeout_s=10) as reader:
            wait_for(lambda: policies(reader) == [("W", "DC1", [FIFO])], timeout_s=15)
            client.set_allocation_policy("W", ["value", "priority"])  # live, no restart
            wait_for(lambda: len(policies(reader)) == 2, timeout_s=15)
            assert reader.get_allocation_policy("W", "DC1").source == Policy.NODE_POLICY
        follower.kill()
        client.set_allocation_policy("W", [], node_id="DC1")  # removed while it was down
        follower.restart()
        with Client(follower.target, timeout_s=10) as reader:
            wait_for(lambda: policies(reader) == [("W", "", [VALUE, PRIORITY])], timeout_s=15)
            wait_for(lambda: at_risk(reader) == {"cheap"}, timeout_s=15)
    finally:
        follower.stop()
