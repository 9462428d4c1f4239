"""Allocation policies: the policy value and its order, SetAllocationPolicy's validation,
which policy is in force (node, SKU, server default), persistence (codec, rebuild, a
follower's memory), atpd's flags, and the RPCs driven in-process."""

from __future__ import annotations

import asyncio
import datetime
import random
from typing import Any

import pytest

from atp import daemon
from atp.engine.writer import Writer
from atp.ledger import Ledger, LedgerConfig, Refused, commands
from atp.ledger.allocation_policy import (
    DEFAULT_POLICY,
    TIE_BREAK,
    AllocationPolicy,
    Criterion,
    PolicyInForce,
    Source,
    merge_orders,
    parse_criteria,
)
from atp.ledger.errors import InvalidArgument, NotFound
from atp.ledger.model import Lane, Reservation, ReservationLine, ReservationState
from atp.persistence import codec, encode_batch, ledger_from_records
from atp.persistence.replica import apply_batch
from atp.server.allocations import AllocationsServicer
from atp.store import MemoryStore
from atp.store.base import ALLOCATION_POLICIES, DATABASES
from atp.v1 import allocation_pb2
from tests.unit.test_replica import NODES as REPLICA_NODES
from tests.unit.test_replica import SKUS, RandomClient, live_state

NOW = datetime.datetime(2026, 12, 4, 12, tzinfo=datetime.UTC).timestamp()
PRIORITY, CHANNEL_RANK, VALUE, DUE_DATE, FIFO = (
    Criterion.PRIORITY, Criterion.CHANNEL_RANK, Criterion.VALUE, Criterion.DUE_DATE,
    Criterion.FIFO)
Criteria = allocation_pb2.AllocationPolicy.Criterion


def reservation(rid: str, *, priority: int = 0, channel: str = "", sequence: int = 0,
                due: int | None = None) -> Reservation:
    return Reservation(rid, ReservationState.HELD, [], 0.0, None, priority=priority,
                       channel=channel, create_sequence=sequence, first_promise_day=due)


def line(line_id: str = "l1", value: int = 0) -> ReservationLine:
    return ReservationLine(line_id, "W", "DC1", 1, 0, unit_value=value)


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger(LedgerConfig(default_ttl_seconds=3600))
    ledger.execute(commands.UpsertNode("DC1"), NOW)
    ledger.execute(commands.UpsertNode("DC2"), NOW)
    ledger.take_changes()
    return ledger


def set_policy(ledger: Ledger, sku: str, criteria: tuple[str, ...], ranks: tuple[str, ...] = (),
               node_id: str = "") -> Any:
    return ledger.apply(commands.SetAllocationPolicy(sku, node_id, criteria, ranks), NOW)


# ----- the order -------------------------------------------------------------------------------


def test_the_default_key_is_the_order_the_ledger_always_had() -> None:
    high_new = reservation("r9", priority=10, sequence=9)
    low_old = reservation("r1", priority=1, sequence=1)
    same_old = reservation("r5", priority=10, sequence=2)
    keys = {r.reservation_id: DEFAULT_POLICY.key(r, line()) for r in (high_new, low_old, same_old)}
    assert keys["r9"] == (-10, 9, "r9", "l1")
    assert sorted(keys, key=keys.__getitem__) == ["r5", "r9", "r1"]


def test_each_criterion_orders_and_says_it_decided() -> None:
    web = reservation("a", channel="web", due=10, sequence=1)
    store = reservation("b", channel="store", due=None, sequence=2)
    none = reservation("c", sequence=3, due=5)
    ranks = AllocationPolicy((CHANNEL_RANK,), ("store", "web"))
    assert [ranks.channel_rank(r.channel) for r in (store, web, none)] == [0, 1, 2]
    assert ranks.deciding(ranks.key(store, line()), ranks.key(web, line())) == "CHANNEL_RANK"
    due = AllocationPolicy((DUE_DATE,))
    assert due.key(none, line()) < due.key(web, line()) < due.key(store, line())  # None last
    value = AllocationPolicy((VALUE, FIFO))
    assert value.key(web, line(value=300)) < value.key(store, line(value=120))
    assert value.deciding(value.key(web, line(value=5)), value.key(store, line(value=5))) == "FIFO"
    twin = reservation("d", sequence=1)
    fifo = AllocationPolicy((FIFO,))
    assert fifo.deciding(fifo.key(web, line()), fifo.key(twin, line())) == TIE_BREAK


def test_merging_orders_of_different_policies_keeps_each_policys_order() -> None:
    by_value = AllocationPolicy((VALUE,))
    items = [("x", by_value, 1, 0), ("y", by_value, 9, 1), ("z", DEFAULT_POLICY, 0, 2)]
    lines = {name: (reservation(name, sequence=seq), line(value=v)) for name, _, v, seq in items}
    policy_of = {name: p for name, p, _, _ in items}
    ordered = merge_orders(
        [name for name, *_ in items], policy_of.__getitem__,
        lambda policy, name: policy.key(*lines[name]), lambda name: name, DEFAULT_POLICY)
    names = [name for name, _ in ordered]
    assert names.index("y") < names.index("x")  # by value within its group
    assert len(names) == 3 and ordered[0][1] == ""


def test_criteria_parse_in_any_case_and_refuse_what_is_not_one() -> None:
    assert parse_criteria("value, Priority,FIFO") == (VALUE, PRIORITY, FIFO)
    for text, problem in (("", "at least one"), ("value,speed", "'speed' is not a criterion"),
                          ("fifo,FIFO", "once")):
        with pytest.raises(ValueError, match=problem):
            parse_criteria(text)


# ----- SetAllocationPolicy ---------------------------------------------------------------------


@pytest.mark.parametrize(("sku", "node", "criteria", "ranks", "field"), [
    ("", "", ("VALUE",), (), "policy.sku"),
    ("W", "", ("VALUE", "SPEED"), (), "policy.criteria[1]"),
    ("W", "", ("CRITERION_UNSPECIFIED",), (), "policy.criteria[0]"),
    ("W", "", ("VALUE", "FIFO", "VALUE"), (), "policy.criteria[2]"),
    ("W", "", ("VALUE",) * 6, (), "policy.criteria"),
    ("W", "", ("CHANNEL_RANK",), (), "policy.criteria"),
    ("W", "", ("VALUE",), ("web",), "policy.channel_ranks"),
    ("W", "", (), ("web",), "policy.channel_ranks"),
    ("W", "", ("CHANNEL_RANK",), ("web", "store", "web"), "policy.channel_ranks[2]"),
    ("W", "", ("CHANNEL_RANK",), ("bad\nname",), "policy.channel_ranks[0]"),
    ("W", "", ("CHANNEL_RANK",), tuple(f"c{i}" for i in range(101)), "policy.channel_ranks"),
    ("W", "a\tb", ("VALUE",), (), "policy.node_id"),
])
def test_bad_policies_are_refused_naming_the_field_and_change_nothing(
    ledger: Ledger, sku: str, node: str, criteria: tuple[str, ...], ranks: tuple[str, ...],
    field: str,
) -> None:
    outcome = set_policy(ledger, sku, criteria, ranks, node)
    assert isinstance(outcome, Refused) and isinstance(outcome.error, InvalidArgument)
    assert field in [violation.field for violation in outcome.error.violations]
    assert ledger.allocation_policies == {} and not ledger.take_changes()


def test_a_node_policy_needs_the_node(ledger: Ledger) -> None:
    outcome = set_policy(ledger, "W", ("VALUE",), node_id="NOPE")
    assert isinstance(outcome, Refused) and isinstance(outcome.error, NotFound)
    assert outcome.error.resource_name == "NOPE"


def test_resolution_node_then_sku_then_server_default(ledger: Ledger) -> None:
    assert ledger.policy_in_force("W", "DC1") == PolicyInForce(
        "W", "DC1", DEFAULT_POLICY, Source.SERVER_DEFAULT)
    # A SKU not yet stocked may have a policy.
    result = set_policy(ledger, "W", ("CHANNEL_RANK", "FIFO"), ("store", "web"))
    sku_policy = AllocationPolicy((CHANNEL_RANK, FIFO), ("store", "web"))
    assert result == PolicyInForce("W", "", sku_policy, Source.SKU_POLICY)
    assert ledger.policy_in_force("W", "DC1").source is Source.SKU_POLICY
    set_policy(ledger, "W", ("VALUE",), node_id="DC2")
    assert ledger.policy_in_force("W", "DC2") == PolicyInForce(
        "W", "DC2", AllocationPolicy((VALUE,)), Source.NODE_POLICY)
    assert ledger.policy_in_force("W", "DC1").policy == sku_policy
    assert ledger.policy_in_force("X", "DC2").source is Source.SERVER_DEFAULT
    # Removing the SKU's policy leaves the node's.
    assert set_policy(ledger, "W", ()) == PolicyInForce("W", "", DEFAULT_POLICY,
                                                        Source.SERVER_DEFAULT)
    assert ledger.policy_in_force("W", "DC2").source is Source.NODE_POLICY


def test_setting_the_same_policy_again_changes_and_announces_nothing(ledger: Ledger) -> None:
    set_policy(ledger, "W", ("VALUE", "FIFO"))
    first = ledger.take_changes()
    assert [e.type for e in first.events] == ["ALLOCATION_POLICY_SET"]
    assert first.events[0].data == {"sku": "W", "node_id": "", "criteria": ["VALUE", "FIFO"],
                                    "channel_ranks": []}
    set_policy(ledger, "W", ("VALUE", "FIFO"))
    set_policy(ledger, "W", (), node_id="DC1")  # removing what is not there
    assert not ledger.take_changes()


# ----- persistence -----------------------------------------------------------------------------


def test_the_record_round_trips_through_the_codec() -> None:
    policy = AllocationPolicy((CHANNEL_RANK, VALUE), ("store", "web"))
    data = codec.encode_record(ALLOCATION_POLICIES, ("W", "DC1", policy))
    assert data == b'["W","DC1",["CHANNEL_RANK","VALUE"],["store","web"]]'
    assert codec.decode_record(ALLOCATION_POLICIES, data) == ("W", "DC1", policy)
    assert ALLOCATION_POLICIES in DATABASES and ALLOCATION_POLICIES in codec.RECORD_DATABASES


def test_policies_survive_a_rebuild_and_reach_a_follower(ledger: Ledger) -> None:
    store = MemoryStore()
    follower = Ledger(LedgerConfig(default_ttl_seconds=3600))

    def commit() -> None:
        batch = encode_batch(ledger.take_changes())
        store.commit(batch)
        apply_batch(follower, batch)

    for node in ("DC1", "DC2"):
        ledger.execute(commands.UpsertNode(node), NOW)
    commit()
    set_policy(ledger, "W", ("CHANNEL_RANK",), ("web",))
    set_policy(ledger, "W", ("DUE_DATE", "PRIORITY"), node_id="DC1")
    set_policy(ledger, "V", ("VALUE",))
    commit()
    set_policy(ledger, "V", ())
    commit()
    expected = {("W", ""): AllocationPolicy((CHANNEL_RANK,), ("web",)),
                ("W", "DC1"): AllocationPolicy((DUE_DATE, PRIORITY))}
    assert ledger.allocation_policies == expected
    rebuilt = ledger_from_records(store.load(), store.last_sequence(), None)
    assert rebuilt.allocation_policies == expected
    assert follower.allocation_policies == expected


# ----- atpd's flags ----------------------------------------------------------------------------


def test_the_flags_set_the_server_default() -> None:
    config = daemon.config_from(daemon.parse_args(
        ["--allocation-policy", "Channel_Rank,value", "--allocation-channel-ranks", "store,web"],
        environ={}))
    assert config.ledger.allocation_policy == AllocationPolicy((CHANNEL_RANK, VALUE),
                                                               ("store", "web"))
    assert daemon.config_from(daemon.parse_args([], environ={})).ledger.allocation_policy == (
        DEFAULT_POLICY)


@pytest.mark.parametrize(("argv", "message"), [
    (["--allocation-policy", "value,speed"], "'speed' is not a criterion"),
    (["--allocation-policy", "value,VALUE"], "once"),
    (["--allocation-policy", "channel_rank"], "give --allocation-channel-ranks"),
    (["--allocation-channel-ranks", "web"], "only when --allocation-policy names channel_rank"),
    (["--allocation-policy", "channel_rank", "--allocation-channel-ranks", "a,a"], "once"),
])
def test_bad_flag_values_end_atpd_with_one_clear_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        daemon.parse_args(argv, environ={})
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


# ----- the RPCs, in-process --------------------------------------------------------------------


def test_the_rpcs_set_get_list_and_explain() -> None:
    async def scenario() -> None:
        now = NOW
        writer = Writer(Ledger(LedgerConfig(default_ttl_seconds=3600)), MemoryStore(),
                        clock=lambda: now)
        writer.start()
        try:
            await writer.execute(commands.UpsertNode("DC1"))
            await writer.execute(commands.AdjustStock("in", (
                commands.Movement("W", "DC1", "RECEIPT", 10),)))
            for rid, units, value in (("cheap", 6, 10), ("dear", 4, 90)):
                await writer.execute(commands.Reserve(rid, (
                    commands.LineRequest("l1", "W", units, "DC1", unit_value=value),)))
            await writer.execute(commands.AdjustStock("out", (
                commands.Movement("W", "DC1", "SHRINKAGE", 5),)))
            servicer = AllocationsServicer(writer)
            set_request = allocation_pb2.SetAllocationPolicyRequest(
                policy=allocation_pb2.AllocationPolicy(
                    sku="W", criteria=[Criteria.VALUE, Criteria.FIFO]))
            answer = await servicer.SetAllocationPolicy(set_request, None)
            assert answer.source == allocation_pb2.AllocationPolicy.SKU_POLICY
            got = await servicer.GetAllocationPolicy(
                allocation_pb2.GetAllocationPolicyRequest(sku="W", node_id="DC1"), None)
            assert list(got.criteria) == [Criteria.VALUE, Criteria.FIFO]
            default = await servicer.GetAllocationPolicy(
                allocation_pb2.GetAllocationPolicyRequest(), None)
            assert default.source == allocation_pb2.AllocationPolicy.SERVER_DEFAULT
            assert list(default.criteria) == [Criteria.PRIORITY, Criteria.FIFO]
            listed = await servicer.ListAllocationPolicies(
                allocation_pb2.ListAllocationPoliciesRequest(), None)
            assert [(p.sku, p.node_id) for p in listed.policies] == [("W", "")]
            explained = await servicer.ExplainAllocation(
                allocation_pb2.ExplainAllocationRequest(sku="W", node_id="DC1"), None)
            rows = [(line.rank, line.reservation_id, line.at_risk, line.decided_by, line.detail)
                    for line in explained.lines]
            assert rows == [(1, "dear", False, "", "served first"),
                            (2, "cheap", True, "VALUE", "value 10 after 90")]
        finally:
            await writer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("seed", range(4))
def test_a_follower_and_a_rebuild_hold_the_leaders_policies_and_marks_in_random_runs(
    seed: int,
) -> None:
    """test_replica's random run with policies set, changed and removed among the commands:
    after every batch the follower's live state (at-risk marks included) and policies are
    the leader's, and so are a rebuild's at the end."""
    rng = random.Random(seed)
    leader = Ledger(LedgerConfig(closed_retention_s=3600))
    follower = Ledger(LedgerConfig(closed_retention_s=3600))
    store = MemoryStore()
    client = RandomClient(seed, leader)
    for node in REPLICA_NODES:
        leader.execute(commands.UpsertNode(node, lanes=(Lane("EU", 1, 3), Lane("US", 2, 1))),
                       NOW)
    now, set_count = NOW, 0
    for batch_number in range(40):
        for _ in range(rng.randint(1, 8)):
            now += rng.choice([0.0, 1.0, 30.0])
            if rng.random() < 0.2:
                criteria = tuple(rng.sample([c.value for c in Criterion], rng.randint(0, 3)))
                ranks = ("web", "store") if "CHANNEL_RANK" in criteria else ()
                node = rng.choice(("", *REPLICA_NODES))
                command: commands.Command = commands.SetAllocationPolicy(
                    rng.choice(SKUS), node, criteria, ranks)
                set_count += not isinstance(leader.apply(command, now), Refused)
            else:
                leader.apply(client.command((2026, 9, 10)), now)
        changes = leader.take_changes()
        batch = encode_batch(changes)
        store.commit(batch)
        leader.forget_durable(changes)
        apply_batch(follower, batch)
        assert live_state(follower) == live_state(leader), f"batch {batch_number}"
        assert follower.allocation_policies == leader.allocation_policies
    rebuilt = ledger_from_records(store.load(), store.last_sequence(), None)
    assert live_state(rebuilt) == live_state(leader)
    assert rebuilt.allocation_policies == leader.allocation_policies
    assert set_count > 0
