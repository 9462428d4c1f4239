"""Review: the engine's clock may start up to a second before the last instant the ledger used.

`steady_clock` (src/atp/bootstrap.py) passes the newest journal event's time as `floor` and
says the clock "starts no earlier than `floor`". SteadyClock.__init__ (src/atp/engine/clock.py
lines 46-48) only applies the floor when it is more than STEP_NOISE_S (1 s) ahead of the wall
clock; for a smaller step back while atpd was down it starts at the wall clock, and the first
instants after a restart are earlier than events already journaled (new reservations dated
before what is on the books; the journal's time order, which the trim's binary search in
Housekeeper._last_older_than relies on, broken). Low severity: at most one second.
"""

from __future__ import annotations

from atp.engine.clock import SteadyClock


def test_the_clock_never_starts_before_its_floor() -> None:
    monotonic = [100.0]
    clock = SteadyClock(lambda: 1_000.0, lambda: monotonic[0], floor=1_000.5)
    assert clock() >= 1_000.5
