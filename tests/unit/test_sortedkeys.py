from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atp.ledger.sortedkeys import LazySortedDict, LazySortedSet


@given(st.lists(st.tuples(st.sampled_from(["set", "del", "walk"]), st.text(max_size=3))))
def test_ordered_walks_match_a_sorted_view_of_the_dict(operations: list[tuple[str, str]]) -> None:
    lazy: LazySortedDict[str, int] = LazySortedDict()
    plain: dict[str, int] = {}
    for step, (action, key) in enumerate(operations):
        if action == "set":
            lazy[key] = plain[key] = step
        elif action == "del" and key in plain:
            del lazy[key]
            del plain[key]
        else:
            assert list(lazy.islice(lazy.bisect_right(key))) == sorted(k for k in plain if k > key)
        assert dict(lazy) == plain
    assert list(lazy.islice(0)) == sorted(plain)


def test_mutators_that_would_bypass_the_key_order_are_refused() -> None:
    lazy: LazySortedDict[str, int] = LazySortedDict()
    lazy["a"] = 1
    for mutate in (lambda: lazy.pop("a"), lambda: lazy.setdefault("b", 2),
                   lambda: lazy.update(b=2), lazy.clear, lazy.popitem):
        with pytest.raises(TypeError):
            mutate()
    assert list(lazy.islice(0)) == ["a"]


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40), st.booleans()), max_size=400))
def test_lazy_sorted_set_walks_like_a_sorted_set(operations: list[tuple[bool, int, bool]]) -> None:
    lazy: LazySortedSet[int] = LazySortedSet()
    reference: set[int] = set()
    for adding, key, walk in operations:
        if adding:
            lazy.add(key)
            reference.add(key)
        else:
            lazy.discard(key)
            reference.discard(key)
        if walk:
            assert list(lazy.after(key)) == sorted(k for k in reference if k > key)
        assert len(lazy) == len(reference) and (key in lazy) == (key in reference)
    assert list(lazy.after(-1)) == sorted(reference)


def test_lazy_sorted_set_bounds_its_pending_changes_without_walks() -> None:
    lazy: LazySortedSet[int] = LazySortedSet()
    for key in range(100_000):
        lazy.add(key)
        lazy.discard(key)
    assert len(lazy._added) <= 1025 and len(lazy._removed) <= 1025
