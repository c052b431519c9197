"""The dedup window: the outcomes of the last content ids scored, so that an id seen again gets its
first outcome without being scored.

Outputs are a deterministic function of (text, model version), so a replay after a crash republishes
the same decision under the same key. On top of that an id seen again inside the window (a producer
retry, an edit) gets the identical outcome, under the version of the model that decided it, even if
its text changed or the model was hot-reloaded in between.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stream_tagger.events import TagScore
from stream_tagger.worker.route import Outcome, Routes


class RecentOutcomes:
    """The outcomes of the last ``size`` content ids remembered with the model version that decided
    them, oldest forgotten first.

    Columns with one slot per id, the slots a ring: a batch's routing columns (``Routes``) go in with
    a few numpy assignments, and an ``Outcome`` is built again only on a hit, which is rare. Per id
    that is the id, its dict entry and ~26 bytes of arrays, and nothing is built or packed per event on
    the way in. The version is kept because a hot reload swaps the model while the window still holds
    the old one's decisions: a replay must name the model that decided.
    """

    def __init__(self, size: int, width: int) -> None:
        """``width``: the most labels a model has (every model's labels are approved tags)."""
        self._slots: dict[str, int] = {}
        self._ids: list[str | None] = [None] * size  # slot -> id
        self._next = 0  # the slot of the oldest id, the next new one's
        self._versions: list[str] = []  # index -> version, one byte per slot
        self._labels: list[Sequence[str]] = []  # index -> the labels of that version's orders
        self._version = np.zeros(size, np.uint8)
        self._tagged = np.zeros(size, bool)
        self._orders = np.zeros((size, width), np.int8)
        # In 1/10,000: routing rounds to 4 decimals, so n / 10_000 is the very float it published.
        self._confidences = np.zeros((size, width), np.uint16)
        self._published = np.zeros((size, width), bool)
        self._duplicate_of = np.full(size, None, object)

    def __len__(self) -> int:
        return len(self._slots)

    def get(self, content_id: str) -> tuple[Outcome, str] | None:
        slot = self._slots.get(content_id)
        if slot is None:
            return None
        index = self._version[slot]
        labels = self._labels[index]
        # One row as Python lists: numpy's per-call overhead would cost more than these few values.
        orders, confidences = self._orders[slot].tolist(), self._confidences[slot].tolist()
        row = zip(orders, confidences, self._published[slot].tolist(), strict=True)
        scores = [TagScore(labels[j], n / 10_000) for j, n, published in row if published]
        status = "tagged" if self._tagged[slot] else "review"
        return Outcome(status, scores, self._duplicate_of[slot]), self._versions[index]

    def add(
        self, content_ids: Sequence[str], routes: Routes, duplicate_of: Sequence[str | None], version: str
    ) -> None:
        """Remember one batch's outcomes, all decided by the model ``version``: row i of ``routes`` is
        ``content_ids[i]``'s routing, and ``duplicate_of[i]`` what the observers annotated on it."""
        if not self._ids:
            return
        index = self._version_index(version, routes.labels)
        written = self._claim(content_ids)
        slots = np.fromiter(written, np.intp, len(written))
        rows = np.fromiter(written.values(), np.intp, len(written))
        width = len(routes.labels)
        self._version[slots] = index
        self._tagged[slots] = routes.tagged[rows]
        self._orders[slots, :width] = routes.orders[rows]
        self._confidences[slots, :width] = np.rint(routes.confidences[rows] * 10_000)
        self._published[slots, :width] = routes.published[rows]
        self._published[slots, width:] = False
        self._duplicate_of[slots] = np.asarray(duplicate_of, object)[rows]

    def _claim(self, content_ids: Sequence[str]) -> dict[int, int]:
        """The slot of each id -> the row of ``content_ids`` it remembers. A new id takes the oldest
        id's slot, which is forgotten. A slot claimed twice in one batch (an id given twice, or
        forgotten within the batch) keeps the later row, as when ids are remembered one by one."""
        slots, ids, next_slot = self._slots, self._ids, self._next
        written: dict[int, int] = {}
        for row, content_id in enumerate(content_ids):
            slot = slots.get(content_id)
            if slot is None:
                slot, next_slot = next_slot, (next_slot + 1) % len(ids)
                forgotten = ids[slot]
                if forgotten is not None:
                    del slots[forgotten]
                ids[slot] = content_id
                slots[content_id] = slot
            written[slot] = row
        self._next = next_slot
        return written

    def _version_index(self, version: str, labels: Sequence[str]) -> int:
        if version in self._versions:
            return self._versions.index(version)
        if len(self._versions) == 256:
            # One byte names the version: after 256 models in one process, forget every outcome
            # rather than let an index name two versions (the forgotten ids are scored again).
            self._slots.clear()
            self._ids = [None] * len(self._ids)
            self._next = 0
            self._versions.clear()
            self._labels.clear()
        self._versions.append(version)
        self._labels.append(labels)
        return len(self._versions) - 1
