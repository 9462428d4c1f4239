"""SetAllocationPolicy: the order in which a SKU's (or a SKU at one node's) scarce stock
is served. A change re-examines the at-risk marks of the positions it covers in the same
command: lines may go at risk or recover under the new order."""

from __future__ import annotations

from atp.ledger import commands
from atp.ledger.allocation_policy import (
    CHANNEL_RANKS_MAX,
    AllocationPolicy,
    Criterion,
    PolicyInForce,
    policy_problem,
)
from atp.ledger.model import Position
from atp.ledger.state import LedgerState
from atp.ledger.validation import Violations

_CRITERIA = {criterion.value: criterion for criterion in Criterion}


def set_allocation_policy(
    state: LedgerState, command: commands.SetAllocationPolicy, now: float
) -> PolicyInForce:
    policy = check_policy(command)
    if command.node_id:
        state.node(command.node_id)
    scope = (command.sku, command.node_id)
    if state.allocation_policies.get(scope) == policy:
        return state.policy_in_force(*scope)  # as it was: nothing changes, nothing announced
    state.save_allocation_policy(command.sku, command.node_id, policy)
    state.emit(
        now, "ALLOCATION_POLICY_SET", sku=command.sku, node_id=command.node_id,
        criteria=list(command.criteria), channel_ranks=list(command.channel_ranks),
    )
    for position in _covered(state, command.sku, command.node_id):
        state.reexamine(position)
    return state.policy_in_force(*scope)


def check_policy(command: commands.SetAllocationPolicy) -> AllocationPolicy | None:
    """The policy the command sets (None: it removes one), or InvalidArgument naming each
    bad field (paths as in SetAllocationPolicyRequest)."""
    violations = Violations()
    violations.identifier("policy.sku", command.sku)
    violations.identifier("policy.node_id", command.node_id, required=False)
    criteria: list[Criterion] = []
    if violations.count("policy.criteria", len(command.criteria), len(Criterion), least=0):
        for index, name in enumerate(command.criteria):
            criterion = _CRITERIA.get(name)
            if criterion is None:
                violations.add(f"policy.criteria[{index}]", f"{name} is not a criterion; one "
                               f"of {', '.join(_CRITERIA)}")
            elif criterion in criteria:
                violations.add(f"policy.criteria[{index}]", f"{name} is named twice")
            else:
                criteria.append(criterion)
    if violations.count("policy.channel_ranks", len(command.channel_ranks), CHANNEL_RANKS_MAX,
                        least=0):
        seen: set[str] = set()
        for index, channel in enumerate(command.channel_ranks):
            violations.identifier(f"policy.channel_ranks[{index}]", channel)
            if channel in seen:
                violations.add(f"policy.channel_ranks[{index}]", f"{channel} is ranked twice")
            seen.add(channel)
    violations.raise_if_any()
    if not command.criteria:
        if command.channel_ranks:
            violations.add("policy.channel_ranks", "no criteria remove the policy: give no "
                           "channel_ranks either")
            violations.raise_if_any()
        return None
    policy = AllocationPolicy(tuple(criteria), tuple(command.channel_ranks))
    problem = policy_problem(policy)
    if problem:
        field_path = ("policy.criteria" if Criterion.CHANNEL_RANK in policy.criteria
                      and not policy.channel_ranks else "policy.channel_ranks")
        violations.add(field_path, problem)
        violations.raise_if_any()
    return policy


def _covered(state: LedgerState, sku: str, node_id: str) -> list[Position]:
    """The positions whose policy in force a change of this scope may change."""
    by_node = state.positions_by_sku.get(sku, {})
    if node_id:
        position = by_node.get(node_id)
        return [position] if position is not None else []
    return [by_node[node] for node in sorted(by_node)]
