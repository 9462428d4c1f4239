"""The ledger: its state (LedgerState) and the one way to change it, a command at a time.

Pure and deterministic: the caller passes `now` with each command, so tests move time and
the same commands give the same state. Each command either applies fully or is refused and
leaves everything as it was. After a command, the positions it touched are settled
(backorders filled, at-risk marks and stock levels announced) and audited. Changed records
and journal events accumulate until the writer takes them for the next durable batch.
"""

from __future__ import annotations

from collections.abc import Iterable

from atp.ledger import (
    commands,
    gateway_plans,
    invariants,
    quotas,
    substitution,
    timeline,
    validation,
)
from atp.ledger.errors import InvalidArgument, InvariantViolation, LedgerError
from atp.ledger.handlers import (
    allocation,
    expiry,
    holds,
    reallocation,
    reservations,
    risk,
    stock,
    supply,
)
from atp.ledger.handlers.channel_allocations import set_channel_allocation
from atp.ledger.handlers.delivery import record_delivery
from atp.ledger.model import Day, Policy, Reservation, day_of
from atp.ledger.outcomes import Outcome, Refused, Result
from atp.ledger.promising import OrderLine, OrderPlan, Planner
from atp.ledger.reallocation import ReallocationResult, Reallocator, Scope
from atp.ledger.state import LedgerConfig, LedgerState

# Commands that only add demand within ATP or take demand away: they cannot make a position
# short, only let at-risk lines fit again.
DEMAND_ONLY_COMMANDS = (commands.Reserve, commands.Commit, commands.Release, commands.ExpireDue)
# Commands that cannot free units for backorders.
TAKING_ONLY_COMMANDS = (commands.Reserve, commands.Commit)
EXPIRY = commands.ExpireDue()


class Ledger(LedgerState):
    """The state, and the entry points that change it (apply) or only read it (promise,
    plan_reallocation, check_invariants). The behaviour is in atp.ledger.handlers."""

    def __init__(self, config: LedgerConfig | None = None) -> None:
        super().__init__(config)

    # ----- changing the ledger ------------------------------------------------------------

    def apply(self, command: commands.Command, now: float, principal: str = "") -> Outcome:
        """Applies one command: its result, or Refused having changed nothing. Its events,
        and those of what it sets off (backorder fills, risk marks), record `principal`."""
        self.now = now
        today = day_of(now)
        if today != self.risk_day:
            risk.note_day(self, today)
        vetted_digest = ""
        if isinstance(command, commands.VettedReserve):
            vetted_digest, command = command.digest, command.reserve
        planned = None
        if isinstance(command, commands.PlannedReserve):
            planned, command = command, command.reserve
        # A HELD reservation the command names whose time has passed expires first (expiry
        # works through a backlog in slices and may not have reached it yet).
        named = self.reservations.get(getattr(command, "reservation_id", ""))
        if named is not None and named.expire_time is not None and named.expire_time <= now:
            self._expire_overdue(named, now)
        self.principal = principal
        if planned is not None:  # judged after any expiry above, which may touch its SKUs
            self.offered_plan = gateway_plans.usable_plan(self, planned, today)
            self.plans_offered += 1
            self.plans_taken += self.offered_plan is not None
        self.vetted_digest = vetted_digest
        try:
            result = _handle(self, command, now)
        except LedgerError as error:
            self.touched.clear()
            return Refused(error)
        else:
            if self.touched:
                self._settle(command, now, today)
            if isinstance(command, commands.UpsertNode):
                self.everything_changed = self.change_mark
        finally:
            self.principal = ""
            self.offered_plan = None
            self.vetted_digest = ""
        return result

    def apply_batch(
        self, batch: Iterable[commands.Command], now: float, principal: str = ""
    ) -> list[Outcome]:
        """Applies each command on its own, in order: an outcome per command."""
        return [self.apply(command, now, principal) for command in batch]

    def execute(self, command: commands.Command, now: float) -> Result:
        """apply() for callers that want a refusal raised: the result, or the LedgerError
        having changed nothing."""
        outcome = self.apply(command, now)
        if isinstance(outcome, Refused):
            raise outcome.error
        return outcome

    def _expire_overdue(self, reservation: Reservation, now: float) -> None:
        """Expires a reservation a command names, as a step of its own before the command."""
        expiry.expire_reservation(self, reservation, now)
        self._settle(EXPIRY, now, day_of(now))

    def _settle(self, command: commands.Command, now: float, today: Day) -> None:
        """After a command: backorders filled from freed or new supply, risk marks, stock
        levels; and every touched position audited against its records (InvariantViolation
        stops the engine rather than go on from a wrong position)."""
        if self.backorders and not isinstance(command, TAKING_ONLY_COMMANDS):
            backordered = {key[0] for key in self.touched if self.backorders.get(key[0])}
            for sku in sorted(backordered):
                reallocation.fill_backorders(self, sku, now, today)
        trigger = risk.SUPPLY_SLIPPED if isinstance(command, commands.UpsertSupply) else (
            risk.SHORTAGE)
        gateway_plans.note_changes(self)
        touched = list(self.touched.values())
        self.touched.clear()
        may_short = not isinstance(command, DEMAND_ONLY_COMMANDS)
        audit = invariants.position_problems
        for position in touched:
            # Marking lines changes no quantity: one timeline pass serves both steps.
            lowest = timeline.lowest_net(position, today)
            if may_short or position.at_risk:
                risk.refresh_risk(self, position, trigger, now, today, lowest)
            risk.announce_stock_level(self, position, now, today, lowest)
            problems = audit(self, position)
            if problems:
                raise InvariantViolation("; ".join(problems))

    # ----- reading it ---------------------------------------------------------------------

    def promise(
        self, lines: list[OrderLine], region: str, policy: Policy, priority: int, now: float,
        explain: bool = False, channel: str = "",
    ) -> OrderPlan:
        """A quote: where and when the lines can be fulfilled, for demand of `channel` (the
        other channels' allocations fenced). Changes nothing."""
        validation.check_promise(lines, region, policy)
        today = day_of(now)
        planner = Planner(self, today, region, policy, priority)
        # A generator: fence_for reads it only when some SKU has an allocation.
        demand = ((sku, "") for line in lines for sku in (line.sku, *line.substitute_skus))
        fence = quotas.fence_for(self, demand, channel, today,
                                 self.include_safety_stock(priority))
        if fence is None:
            return substitution.promise(planner, lines, explain)
        try:
            return fence.trim_plan(substitution.promise(planner, lines, explain),
                                   policy.allow_partial)
        finally:
            fence.undo()

    def plan_reallocation(self, scope: Scope, now: float) -> ReallocationResult:
        """A dry run: what Reallocate would do now. Changes nothing."""
        validation.check_scope(scope.node_id, scope.sku, scope.reservation_ids)
        plans = Reallocator(self, day_of(now)).plan(scope)
        return ReallocationResult(plans, applied=False, plan_sequence=self.sequence)

    def check_invariants(self) -> list[str]:
        """Recomputes every derived quantity from the records; returns each disagreement."""
        return invariants.derived_problems(self) + quotas.count_problems(self)


def _handle(state: LedgerState, command: commands.Command, now: float) -> Result:
    """The handler of each command, the most frequent first."""
    match command:
        case commands.Reserve():
            return reservations.reserve(state, command, now)
        case commands.Commit():
            return reservations.commit(state, command, now)
        case commands.Release():
            return reservations.release(state, command, now)
        case commands.Fulfill():
            return reservations.fulfill(state, command, now)
        case commands.Extend():
            return reservations.extend(state, command, now)
        case commands.ExpireDue():
            return expiry.expire_due(state, command, now)
        case commands.AdjustStock():
            return stock.adjust_stock(state, command, now)
        case commands.UpsertSupply():
            return supply.upsert_supply(state, command, now)
        case commands.ReceiveSupply():
            return supply.receive_supply(state, command, now)
        case commands.PlaceHold():
            return holds.place_hold(state, command, now)
        case commands.ReleaseHold():
            return holds.release_hold(state, command, now)
        case commands.SetSafetyStock():
            return stock.set_safety_stock(state, command, now)
        case commands.UpsertNode():
            return stock.upsert_node(state, command, now)
        case commands.Reallocate():
            return reallocation.reallocate(state, command, now)
        case commands.SetAllocationPolicy():
            return allocation.set_allocation_policy(state, command, now)
        case commands.RecordDelivery():
            return record_delivery(state, command, now)
        case commands.SetChannelAllocation():
            return set_channel_allocation(state, command, now)
    raise InvalidArgument.single("command", f"unknown command {type(command).__name__}")
