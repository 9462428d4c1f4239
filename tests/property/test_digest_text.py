"""A Reserve's digest is taken of the text repr() gives its content as plain tuples; the
text is built piece by piece for speed, and must stay that repr exactly: a stored
reservation's digest decides whether a retried Reserve is a replay."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from atp.ledger import commands
from atp.ledger.model import Objective, Policy

texts = st.text(max_size=12)
integers = st.integers(min_value=-(2**63), max_value=2**63)
dates = st.none() | st.tuples(integers, integers, integers)
lines = st.builds(
    commands.LineRequest, texts, texts, integers, texts, dates,
    st.sampled_from([0, 0, 7]), st.sampled_from([(), (), ("S1", "S2")]),
    st.sampled_from([None, None, (2026, 1, 2)]),
)
policies = st.builds(Policy, st.booleans(), integers, st.booleans(), st.sampled_from(Objective))
reserves = st.builds(
    commands.Reserve, texts, st.lists(lines, max_size=4).map(tuple), texts, policies,
    integers, st.booleans(), integers, texts, texts, st.booleans(),
)


def line_content(line: commands.LineRequest) -> tuple[object, ...]:
    """A line's five original fields; the later ones only when any is set."""
    later = (line.unit_value, line.substitute_skus, line.need_by_date)
    return tuple(line)[:5] + (later if later != (0, (), None) else ())


def repr_text(command: commands.Reserve) -> str:
    """The text digests were always taken of (the original implementation)."""
    policy = command.policy
    return repr((
        "Reserve", command.reservation_id, tuple(map(line_content, command.lines)),
        command.destination_region,
        (policy.ship_complete, policy.max_nodes, policy.allow_partial, policy.objective.value),
        command.ttl_seconds, command.commit, command.priority, command.channel,
        command.customer_id,
    ) + ((True,) if command.allow_substitution else ()))


@settings(max_examples=500)
@given(reserves)
def test_the_reserve_text_is_the_repr_of_its_content(command: commands.Reserve) -> None:
    assert commands._reserve_text(command) == repr_text(command)


def test_a_known_reserve_keeps_its_digest() -> None:
    """The digest the version before this text builder gave (87c521c)."""
    command = commands.Reserve(
        "ORD-1", (commands.LineRequest("l1", "SKU-1", 2, "DC1", (2026, 12, 1)),), "EU")
    assert commands.digest(command) == "2dc83d2253da284b3e47f64036afff75"
