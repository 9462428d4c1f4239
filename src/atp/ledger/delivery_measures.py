"""The perfect-order measures of one delivery, and the bounded counters metrics read.

One definition serves both the metrics (counted as deliveries are recorded) and the KPIs
(`atp.kpi`, from the journal), so the two cannot disagree on what "on time" means:

- **on time**: delivered on or before the reservation's first promise date (the promise it
  was created with; later reallocations do not move it). A reservation without a promise
  date is not judged: `on_time` is None.
- **in full**: units delivered >= units ordered (what the customer still wanted: each line's
  quantity less released units, plus backordered ones).
- **damage free**: no damaged units.
- **documentation accurate**: the paperwork was right.
- **perfect**: all four met; None when on time is not judged.
"""

from __future__ import annotations

from typing import NamedTuple

from atp import limits

MEASURES = ("on_time", "in_full", "damage_free", "documentation_accurate")
# The label a channel beyond the first metric_channels_max distinct ones is counted under.
OTHER_CHANNEL = "other"


class Measures(NamedTuple):
    on_time: bool | None
    in_full: bool
    damage_free: bool
    documentation_accurate: bool

    @property
    def perfect(self) -> bool | None:
        if self.on_time is None:
            return None
        return self.on_time and self.in_full and self.damage_free and self.documentation_accurate


def measures_met(
    delivered_day: int, first_promise_day: int | None, units_delivered: int,
    units_ordered: int, damaged_units: int, documentation_correct: bool,
) -> Measures:
    """The measures of one delivery; days are ordinals (date.toordinal())."""
    return Measures(
        on_time=None if first_promise_day is None else delivered_day <= first_promise_day,
        in_full=units_delivered >= units_ordered,
        damage_free=damaged_units == 0,
        documentation_accurate=documentation_correct,
    )


class DeliveryTally:
    """Deliveries recorded since start and the measures they met, per channel: the counters
    behind atp_deliveries_recorded_total and atp_delivery_measures_met_total.

    Each record counts, corrections included (the KPIs take the latest record per
    reservation). Channels are the caller's free text: the first metric_channels_max distinct
    ones get a series each and every later one counts as "other", so a stream of random
    channel names cannot grow memory or the scrape without bound."""

    def __init__(self, channels_max: int = limits.metric_channels_max) -> None:
        self.channels_max = channels_max
        self.recorded: dict[str, int] = {}
        # (channel, measure) -> deliveries that met it; measure is one of MEASURES or "perfect".
        self.met: dict[tuple[str, str], int] = {}

    def label(self, channel: str) -> str:
        if channel in self.recorded or len(self.recorded) < self.channels_max:
            return channel
        return OTHER_CHANNEL

    def count(self, channel: str, measures: Measures) -> None:
        label = self.label(channel)
        self.recorded[label] = self.recorded.get(label, 0) + 1
        met = {name: bool(value) for name, value in zip(MEASURES, measures, strict=True)}
        met["perfect"] = bool(measures.perfect)
        for name, value in met.items():
            if value:
                self.met[(label, name)] = self.met.get((label, name), 0) + 1
