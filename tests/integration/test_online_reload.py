"""Promotion under load: the worker swaps models between batches, without a rebalance, losing nothing."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from stream_tagger.events import TaggedContent
from stream_tagger.model.versions import set_current
from stream_tagger.settings import Settings
from stream_tagger.tools.produce import encode
from stream_tagger.tools.sources import dataset_events
from tests.integration.helpers import WorkerProcess, drain, produce, wait_for
from tests.integration.online_helpers import models_root, relabelled_copy, wait_metric

pytestmark = pytest.mark.integration

CHUNK = 500


def test_promotion_under_load_swaps_the_model_without_restart_or_loss(
    settings: Settings, tmp_path: Path
) -> None:
    root, v1 = models_root(tmp_path)
    relabelled_copy(root, v1, "v2-promoted", ("mlops", "natural-language-processing"))
    settings = settings.model_copy(
        update={"model_dir": root / "current", "model_watch_interval_seconds": 0.2}
    )
    produced: list[str] = []
    stop = threading.Event()

    def load() -> None:
        """A steady stream in chunks until told to stop (the promotion lands in the middle of it)."""
        n = 0
        while not stop.is_set():
            events = dataset_events(CHUNK, id_prefix=f"load{n:03d}")
            produce(settings, [(e.id.encode(), encode(e)) for e in events])
            produced.extend(e.id for e in events)
            n += 1
            time.sleep(0.05)

    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        producer = threading.Thread(target=load)
        producer.start()
        try:
            worker.wait_processed(3 * CHUNK)
            set_current(root, "v2-promoted")  # the whole promotion: one atomic pointer rename
            promoted = wait_metric(
                worker,
                "stream_tagger_model_info",
                {"version": "v2-promoted", "role": "live"},
                lambda v: v == 1,
            )
            # Events sent from now on are taken after the swap and scored by the new version; the chunk
            # being sent meanwhile may straddle it. (Events processed from now on may still come from
            # batches taken before it.)
            sent = len(produced)
            wait_for(lambda: len(produced) >= sent + 4 * CHUNK, "4 more chunks sent after the swap")
        finally:
            stop.set()
            producer.join()
        worker.wait_processed(len(produced))
        old_info = worker.metric("stream_tagger_model_info", {"version": v1, "role": "live"})
        tagged = drain(settings, settings.topic_tagged, lambda seen: len(seen) >= len(produced))
        processed = worker.processed()
        assert worker.terminate() == 0

    assert promoted == 1 and old_info == 0
    assert processed == len(produced)
    assert {k.decode() for k in tagged} == set(produced)
    assert all(len(values) == 1 for values in tagged.values()), "an event was processed twice"
    versions = Counter(msgspec.json.decode(v[0], type=TaggedContent).model_version for v in tagged.values())
    assert set(versions) == {v1, "v2-promoted"} and min(versions.values()) >= CHUNK, versions
    log = worker.output()
    assert "revoked" not in log.split("Signal received")[0], "the swap must not rebalance the group"
