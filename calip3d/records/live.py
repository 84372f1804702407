"""Dicts derived from the dataset records: the old per-topic tables (`calip3d.datasets.registry.DATASETS`,
`calip3d.fetch.sources.RELEASES`, `calip3d.published.PAPER_BETAS`, ...) are views, never copies."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, Mapping, MutableMapping, TypeVar

from .record import DatasetRecord

K = TypeVar("K")
V = TypeVar("V")
Derive = Callable[[tuple[DatasetRecord, ...]], dict]


class LiveView(MutableMapping[K, V], Generic[K, V]):
    """A dict derived from `records` (name -> record) on read, so that a record added or replaced (tests do it with
    monkeypatch) shows at once; it is derived again only when the records change. An item set on the view overrides
    the derived one until it is deleted or set back to the derived value (tests substitute fetch entries with
    `monkeypatch.setitem`)."""

    def __init__(self, derive: Derive, records: Mapping[str, DatasetRecord]) -> None:
        self._derive = derive
        self._records = records
        self._seen: tuple[DatasetRecord, ...] | None = None
        self._derived: dict = {}
        self._overrides: dict = {}
        self._hidden: set = set()

    def derived(self) -> dict:
        """The items as the records give them, without overrides."""
        records = tuple(self._records.values())
        if records != self._seen:
            self._derived, self._seen = self._derive(records), records
        return self._derived

    def _current(self) -> dict:
        items = {k: v for k, v in self.derived().items() if k not in self._hidden}
        items.update(self._overrides)
        return items

    def __getitem__(self, key: K) -> V:
        return self._current()[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def __setitem__(self, key: K, value: V) -> None:
        self._hidden.discard(key)
        if key in self.derived() and self.derived()[key] is value:
            self._overrides.pop(key, None)
        else:
            self._overrides[key] = value

    def __delitem__(self, key: K) -> None:
        if key not in self:
            raise KeyError(key)
        self._overrides.pop(key, None)
        if key in self.derived():
            self._hidden.add(key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._current()!r})"
