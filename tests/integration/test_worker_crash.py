"""Crashes lose nothing: SIGKILL and restart, and a group member killed while another takes over."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_tagger.settings import Settings
from tests.integration.helpers import (
    WorkerProcess,
    assert_every_id_out,
    drain,
    has_keys,
    kill_mid_stream,
    pin_model,
    produce,
    read_all,
    valid_events,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_sigkill_mid_stream_then_restart_accounts_for_every_id(settings: Settings, tmp_path: Path) -> None:
    settings = pin_model(settings, tmp_path)
    events = valid_events(20_000, prefix="kill")
    produce(settings, events)

    later = kill_mid_stream(settings, tmp_path / "first.log", processed=2_000)
    events += later

    with WorkerProcess(settings, tmp_path / "second.log") as second:
        second.wait_ready()
        drain(settings, settings.topic_tagged, has_keys(len(events)), timeout=120)
        second.wait_processed(len(later))  # counted once acked, which may trail what the drain saw
        assert second.terminate() == 0

    # Everything the topic holds once both are gone: the outputs the killed worker published but
    # never committed come out again, and are counted.
    assert_every_id_out([key for key, _ in events], read_all(settings, settings.topic_tagged))


def test_killed_group_member_partitions_move_to_the_survivor(settings: Settings, tmp_path: Path) -> None:
    settings = pin_model(settings, tmp_path)
    with WorkerProcess(settings, tmp_path / "a.log") as a, WorkerProcess(settings, tmp_path / "b.log") as b:
        a.wait_ready()
        b.wait_ready()
        events = valid_events(20_000, prefix="pair")
        produce(settings, events)
        b.wait_processed(1_000)
        b.kill()
        # b may have tagged all of its share before the kill: the takeover shows once its session
        # times out, and in the events sent after it, half of which land on b's partitions.
        everything = (200, f"model loaded, {settings.partitions} partition(s) assigned")
        wait_for(lambda: a.get("/ready") == everything, "the survivor holds every partition")
        later = valid_events(2_000, prefix="after")
        produce(settings, later)
        events += later
        drain(settings, settings.topic_tagged, has_keys(len(events)), timeout=120)
        assert a.terminate() == 0

    assert_every_id_out([key for key, _ in events], read_all(settings, settings.topic_tagged))
