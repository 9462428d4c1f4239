"""A reservation survives its stored record whole, every field set or not: the codec writes
some fields only when set and decodes by position (codec._reservation_back), so a field
added or reordered in the model without the codec would show here."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from atp.ledger.model import (
    Delivery,
    Objective,
    Reservation,
    ReservationLine,
    ReservationState,
    policy_of,
)
from atp.persistence import codec
from atp.store.base import CLOSED, RESERVATIONS

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_DAYS = st.integers(0, 30_000)
_TIMES = st.floats(0, 4e9, allow_nan=False).map(lambda value: round(value, 3))

_LINES = st.builds(
    ReservationLine, _TEXT, _TEXT, _TEXT, st.integers(0, 1000), _DAYS, st.none() | _DAYS,
    st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 1000), st.booleans(),
    st.booleans(), _TEXT, _TEXT, st.integers(0, 10**9), _TEXT,
)
_DELIVERIES = st.none() | st.builds(Delivery, _DAYS, st.integers(0, 1000), st.integers(0, 10),
                                    st.booleans(), _TIMES)
_POLICIES = st.builds(policy_of, st.booleans(), st.integers(0, 5), st.booleans(),
                      st.sampled_from([objective.value for objective in Objective]))

RESERVATIONS_ = st.builds(
    Reservation, _TEXT, st.sampled_from(list(ReservationState)), st.lists(_LINES, max_size=3),
    _TIMES, st.none() | _TIMES, st.integers(-5, 5), _TEXT, _TEXT, _TEXT, _POLICIES, _TEXT,
    st.integers(0, 10**9), st.none() | _TIMES, st.integers(1, 10**6), st.none() | _DAYS,
    _DELIVERIES,
)


@given(RESERVATIONS_, st.sampled_from([RESERVATIONS, CLOSED]))
def test_a_reservation_decodes_to_what_was_encoded(reservation: Reservation, database: str
                                                   ) -> None:
    decoded = codec.decode_record(database, codec.encode_record(database, reservation))
    assert decoded == reservation
