"""Allocations service, allocation-policy RPCs: SetAllocationPolicy, GetAllocationPolicy,
ListAllocationPolicies and ExplainAllocation (mixed into AllocationsServicer)."""

from __future__ import annotations

from typing import Any

from atp.ledger import commands
from atp.ledger.allocation_policy import (
    AllocationPolicy,
    PolicyInForce,
    Source,
    detail,
)
from atp.ledger.errors import InvalidArgument
from atp.ledger.model import Reservation, ReservationLine
from atp.ledger.validation import Violations
from atp.server import convert
from atp.server.servicers import LedgerServicer
from atp.v1 import allocation_pb2

Message = allocation_pb2.AllocationPolicy
_SOURCES = {
    Source.SERVER_DEFAULT: Message.SERVER_DEFAULT,
    Source.SKU_POLICY: Message.SKU_POLICY,
    Source.NODE_POLICY: Message.NODE_POLICY,
}


class PolicyMethods(LedgerServicer):
    """The allocation-policy RPCs."""

    async def SetAllocationPolicy(
        self, request: allocation_pb2.SetAllocationPolicyRequest, context: Any
    ) -> allocation_pb2.AllocationPolicy:
        return await self._mutate(
            context, PolicyInForce, lambda: set_allocation_policy(request), policy_message)

    async def GetAllocationPolicy(
        self, request: allocation_pb2.GetAllocationPolicyRequest, context: Any
    ) -> allocation_pb2.AllocationPolicy:
        def read() -> allocation_pb2.AllocationPolicy:
            violations = Violations()
            violations.identifier("sku", request.sku, required=False)
            violations.identifier("node_id", request.node_id, required=False)
            if request.node_id and not request.sku:
                violations.add("node_id", "a node's policy is a SKU's: give sku too")
            violations.raise_if_any()
            if request.node_id:
                self.ledger.node(request.node_id)
            return policy_message(self.ledger.policy_in_force(request.sku, request.node_id))

        return await self._read(context, read)

    async def ListAllocationPolicies(
        self, request: allocation_pb2.ListAllocationPoliciesRequest, context: Any
    ) -> allocation_pb2.ListAllocationPoliciesResponse:
        def read() -> allocation_pb2.ListAllocationPoliciesResponse:
            policies = self.ledger.allocation_policies
            return allocation_pb2.ListAllocationPoliciesResponse(policies=[
                policy_message(PolicyInForce(
                    sku, node_id, policies[(sku, node_id)],
                    Source.NODE_POLICY if node_id else Source.SKU_POLICY))
                for sku, node_id in sorted(policies)
            ])

        return await self._read(context, read)

    async def ExplainAllocation(
        self, request: allocation_pb2.ExplainAllocationRequest, context: Any
    ) -> allocation_pb2.ExplainAllocationResponse:
        return await self._read(context, lambda: self._explain(request))

    def _explain(
        self, request: allocation_pb2.ExplainAllocationRequest
    ) -> allocation_pb2.ExplainAllocationResponse:
        violations = Violations()
        violations.identifier("sku", request.sku)
        violations.identifier("node_id", request.node_id)
        violations.raise_if_any()
        ledger = self.ledger
        ledger.node(request.node_id)
        in_force = ledger.policy_in_force(request.sku, request.node_id)
        response = allocation_pb2.ExplainAllocationResponse(policy=policy_message(in_force))
        position = ledger.positions.get((request.sku, request.node_id))
        if position is None:  # no demand there (yet): the policy that would order it
            return response
        policy = in_force.policy
        ranked = sorted(
            (policy.key(ledger.reservations[key[0]], line), key)
            for key, line in position.lines.items())
        previous: tuple[Any, tuple[Reservation, ReservationLine]] | None = None
        for rank, (sort_key, key) in enumerate(ranked, start=1):
            reservation, line = ledger.reservations[key[0]], position.lines[key]
            decided_by = text = ""
            if previous is not None:
                decided_by = policy.deciding(previous[0], sort_key)
                text = detail(decided_by, previous[1], (reservation, line))
            response.lines.append(ranked_line(rank, reservation, line, decided_by, text))
            previous = (sort_key, (reservation, line))
        return response


def ranked_line(
    rank: int, reservation: Reservation, line: ReservationLine, decided_by: str, text: str
) -> allocation_pb2.RankedLine:
    return allocation_pb2.RankedLine(
        rank=rank, reservation_id=reservation.reservation_id, line_id=line.line_id,
        quantity=line.open_quantity, at_risk=line.at_risk, decided_by=decided_by,
        detail=text or "served first", priority=reservation.priority,
        channel=reservation.channel, unit_value=line.unit_value,
        due_date=convert.date_message(reservation.first_promise_day),
    )


def set_allocation_policy(
    request: allocation_pb2.SetAllocationPolicyRequest,
) -> commands.SetAllocationPolicy:
    """The request as a command; criteria by name (the ledger refuses what is not one)."""
    if not request.HasField("policy"):
        raise InvalidArgument.single("policy", "required")
    policy = request.policy
    names = Message.Criterion
    return commands.SetAllocationPolicy(
        sku=policy.sku,
        node_id=policy.node_id,
        criteria=tuple(
            names.Name(number) if number in names.values() else str(number)
            for number in policy.criteria),
        channel_ranks=tuple(policy.channel_ranks),
    )


def policy_message(in_force: PolicyInForce) -> allocation_pb2.AllocationPolicy:
    return allocation_pb2.AllocationPolicy(
        sku=in_force.sku, node_id=in_force.node_id,
        criteria=criteria_numbers(in_force.policy),
        channel_ranks=list(in_force.policy.channel_ranks),
        source=_SOURCES[in_force.source],
    )


def criteria_numbers(policy: AllocationPolicy) -> list[Message.Criterion]:
    return [getattr(Message, name) for name in policy.criterion_names]
