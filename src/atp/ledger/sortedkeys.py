"""A dict whose keys can also be walked in sorted order, for listing with page tokens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, NoReturn, TypeVar

from sortedcontainers import SortedList

K = TypeVar("K")
V = TypeVar("V")


class LazySortedDict(dict[K, V], Generic[K, V]):
    """Inserting costs a plain dict's insert plus a list append; new keys are sorted in on the
    next ordered walk (bisect_right / islice, the part of SortedDict's API paging uses).

    Reserve adds a key per call and listing is rare: SortedDict's insert into its sorted key
    list cost ~3 µs of each reserve. Only the mutators below keep the key order; the others
    are refused rather than silently leaving it stale.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ordered: SortedList = SortedList()
        self._unordered: list[K] = []

    def __setitem__(self, key: K, value: V) -> None:
        if key not in self:
            self._unordered.append(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: K) -> None:
        dict.__delitem__(self, key)
        self._sort_in()
        self._ordered.remove(key)

    def bisect_right(self, key: K) -> int:
        self._sort_in()
        return int(self._ordered.bisect_right(key))

    def islice(self, start: int) -> Iterator[K]:
        self._sort_in()
        return iter(self._ordered.islice(start))

    def _sort_in(self) -> None:
        if self._unordered:
            self._ordered.update(self._unordered)
            self._unordered = []

    def _refused(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("LazySortedDict supports item assignment and deletion only")

    pop = popitem = setdefault = update = clear = _refused


PENDING_MIN = 1024


class LazySortedSet(Generic[K]):
    """A set whose members can also be walked in sorted order, for listing with page tokens.

    Adding and discarding cost a plain set's operation (the hot path: every reservation
    changes state); the sorted order catches up on the next ordered walk, at a cost in
    proportion to what changed since the last one.
    """

    def __init__(self) -> None:
        self._members: set[K] = set()
        self._ordered: SortedList = SortedList()
        self._added: list[K] = []  # members not yet in _ordered
        self._removed: set[K] = set()  # in _ordered (or _added) but no longer members
        # Catch up once this many changes are pending: memory stays in proportion to the
        # members even if nobody ever walks the set.
        self._pending_max = PENDING_MIN

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, key: object) -> bool:
        return key in self._members

    def add(self, key: K) -> None:
        if key in self._members:
            return
        self._members.add(key)
        if key in self._removed:
            self._removed.discard(key)  # still physically present: it simply stays
        else:
            self._added.append(key)
            if len(self._added) > self._pending_max:
                self._catch_up()

    def discard(self, key: K) -> None:
        if key in self._members:
            self._members.discard(key)
            self._removed.add(key)
            if len(self._removed) > self._pending_max:
                self._catch_up()

    def after(self, key: K) -> Iterator[K]:
        """Members greater than `key`, ascending (do not change the set while walking)."""
        self._catch_up()
        return iter(self._ordered.islice(self._ordered.bisect_right(key)))

    def _catch_up(self) -> None:
        if self._added:
            self._ordered.update(self._added)
            self._added = []
        for key in self._removed:
            self._ordered.remove(key)
        self._removed.clear()
        self._pending_max = max(PENDING_MIN, len(self._members))
