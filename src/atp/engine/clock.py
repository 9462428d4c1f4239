"""The engine's clock: wall-clock time that never runs backwards and reports its steps.

Expiry and dates follow the wall clock (calendar days are what promises are made in), but an
operator's or NTP's step of the system clock must not undo time the ledger has already used:
a step back would date new reservations in the past and make expiry wait. So the engine
keeps the last instant it used and, while the wall clock is behind it, advances by the
monotonic clock instead; it rejoins the wall clock once that catches up. A step forward is
followed (the wall clock is the truth the calendar needs), but one larger than a bound is
logged loudly and counted, never acted on silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("atp.clock")

# Differences below this between the wall clock and the monotonic estimate are drift or
# scheduling noise, not steps.
STEP_NOISE_S = 1.0


class SteadyClock:
    """Callable like time.time; never returns less than it returned before."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = time.monotonic,
        *,
        forward_step_max_s: float = 60.0,
        floor: float = 0.0,
    ) -> None:
        self._wall = wall
        # None: no independent measure of elapsed time (an injected test clock), so a step
        # back holds time still instead of advancing it by a second clock.
        self._monotonic = monotonic
        self.forward_step_max_s = forward_step_max_s
        self.forward_steps = 0
        self.backward_steps = 0
        self._behind = False
        self._last = wall()
        self._last_monotonic = monotonic() if monotonic is not None else 0.0
        if floor > self._last:  # never start before an instant already used
            if floor > self._last + STEP_NOISE_S:
                self._note_backward(floor - self._last)
            self._last = floor

    def __call__(self) -> float:
        wall = self._wall()
        expected = self._expected()
        if wall < expected - STEP_NOISE_S:
            self._note_backward(expected - wall)
        elif self._behind and wall >= expected:
            self._behind = False
            log.warning("the wall clock caught up with the engine's clock; following it again")
        if wall - expected > max(self.forward_step_max_s, STEP_NOISE_S):
            self._note_forward(wall - expected)
        now = max(wall, expected)
        self._last = now
        return now

    def _expected(self) -> float:
        """Where the engine's time should be now: the last instant plus the time elapsed."""
        if self._monotonic is None:
            return self._last
        monotonic = self._monotonic()
        elapsed, self._last_monotonic = monotonic - self._last_monotonic, monotonic
        return self._last + max(0.0, elapsed)

    def _note_backward(self, seconds: float) -> None:
        if self._behind:
            return  # one step, one warning: it stays behind until the wall clock catches up
        self._behind = True
        self.backward_steps += 1
        log.error(
            "the wall clock stepped back %.1f s; the engine's clock keeps going forward from "
            "the last instant it used and rejoins the wall clock when it catches up", seconds,
        )

    def _note_forward(self, seconds: float) -> None:
        self.forward_steps += 1
        log.error(
            "the wall clock stepped forward %.1f s (more than the %.0f s bound): expiries and "
            "dates now follow it; HELD reservations due in that span expire now",
            seconds, self.forward_step_max_s,
        )
