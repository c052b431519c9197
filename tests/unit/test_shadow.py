"""Shadow comparison by tag name, with disagreement records for the topic."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import numpy as np
import pytest

from stream_tagger.events import ShadowDisagreement
from stream_tagger.shadow import compare

LIVE = ("computer-vision", "mlops", "natural-language-processing", "other")
SHADOW = ("other", "natural-language-processing", "mlops", "computer-vision")  # another label order


def test_compares_top1_by_name_and_records_each_disagreement() -> None:
    live = np.array([[0.9, 0.05, 0.03, 0.02], [0.1, 0.7, 0.1, 0.1], [0.2, 0.2, 0.5, 0.1]], dtype=np.float32)
    # Same answers as live for "a" and "c" (in shadow label order), "b" goes to other.
    shadow = np.array([[0.0, 0.0, 0.1, 0.9], [0.6, 0.2, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1]], dtype=np.float32)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    report = compare(["a", "b", "c"], LIVE, live, "v1", SHADOW, shadow, "v2", now=now)
    assert report.agree == 2
    assert report.disagree == 1
    assert report.pairs == {("mlops", "other"): 1}
    record = report.records[0]
    assert (record.id, record.live_tag, record.shadow_tag) == ("b", "mlops", "other")
    assert record.live_confidence == pytest.approx(0.7)
    assert record.shadow_confidence == pytest.approx(0.6)
    assert msgspec.json.decode(msgspec.json.encode(record), type=ShadowDisagreement) == record


def test_empty_batch_and_mismatched_inputs() -> None:
    empty = np.zeros((0, 4), dtype=np.float32)
    assert compare([], LIVE, empty, "v1", SHADOW, empty, "v2").agree == 0
    with pytest.raises(ValueError, match="same events"):
        compare(["a"], LIVE, empty, "v1", SHADOW, empty, "v2")
