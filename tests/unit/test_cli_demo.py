"""The demo's workload and its accounting: unique keys, every malformed kind, no double counting."""

from __future__ import annotations

import io
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import msgspec
import pytest
from rich.console import Console

from stream_tagger.events import DeadLetter, RawContent, TaggedContent, TagScore
from stream_tagger.kafka.config import faust_credentials, librdkafka_common
from stream_tagger.settings import Settings
from stream_tagger.tools import demo
from stream_tagger.tools.demo import Tally, demo_stream, malformed_events
from stream_tagger.tools.sources import BUNDLED_DATASET, valid_posts
from stream_tagger.tools.tail import Record
from stream_tagger.worker.decode import Rejection, decode_raw
from tests.conftest import MODELS

LIMIT = 64 * 1024


def test_each_malformed_event_is_rejected_for_its_reason() -> None:
    for reason, value in malformed_events(LIMIT):
        rejection = decode_raw(value, LIMIT)
        assert isinstance(rejection, Rejection)
        assert rejection.reason == reason


def test_demo_stream_has_unique_keys_one_percent_malformed_and_two_percent_vague() -> None:
    messages, titles = demo_stream(valid_posts(BUNDLED_DATASET), 1_000, "run", LIMIT)
    assert len(messages) == 1_000
    assert len({key for key, _ in messages}) == 1_000
    bad = [key for key, _ in messages if b"-bad-" in key]
    assert len(bad) == 10
    reasons = Counter(key.decode().rsplit("-", 1)[-1] for key in bad)
    assert reasons == {reason: 2 for reason, _ in malformed_events(LIMIT)}
    assert len(titles) == 990
    assert messages[0][0] != bad[0], "malformed events are spread through, not first"
    vague = [key for key, _ in messages if b"-vague-" in key]
    assert len(vague) == 19  # one valid event in 50 names no topic: the review path
    assert vague[0] != messages[0][0] and vague[-1] != messages[-1][0]


def test_small_demo_stream_still_shows_every_dead_letter_reason() -> None:
    messages, _ = demo_stream(valid_posts(BUNDLED_DATASET), 20, "run", LIMIT)
    assert sum(b"-bad-" in key for key, _ in messages) == 5


def _tagged(id: str, status: str = "tagged") -> Record:
    now = datetime.now(UTC)
    event = TaggedContent(
        id=id,
        status=status,
        tags=[TagScore("mlops", 0.9)] if status == "tagged" else [],
        author_tags=[],
        model_version="v",
        event_time=now - timedelta(milliseconds=20),
        processed_at=now,
    )
    return Record("tagged", 0, 0, msgspec.json.encode(event), event)


def test_tally_counts_each_id_once_whatever_the_replays() -> None:
    tally = Tally(titles={})
    letter = DeadLetter(
        reason="not_json",
        detail="",
        original=b"{",
        original_key=b"k",
        topic="raw",
        partition=0,
        offset=3,
        received_at=datetime.now(UTC),
    )
    for record in (
        _tagged("a"),
        _tagged("a"),
        _tagged("b", "pending_review"),
        _tagged("b"),
        Record("dlq", 0, 0, b"", letter),
        Record("dlq", 0, 1, b"", letter),
        Record("raw", 0, 0, b"", RawContent(id="r", title="t", created_at=datetime.now(UTC))),
    ):
        tally.add(record)
    assert (len(tally.tagged), len(tally.review), len(tally.dead), tally.done) == (1, 1, 1, 3)
    assert [event.id for event in tally.recent] == ["a"]
    assert tally.percentile(50) == 20.0


class _Started(Exception):
    """Raised by the fake worker process: the test has what it came for."""


class _FakeBroker:
    bootstrap_servers = "127.0.0.1:1"
    pid = 0

    def __init__(self, **_kwargs: object) -> None:
        pass

    def __enter__(self) -> _FakeBroker:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass


SHELL_SECURITY = {
    "sasl": {
        "STREAM_TAGGER_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "STREAM_TAGGER_SASL_MECHANISM": "PLAIN",
        "STREAM_TAGGER_SASL_USERNAME": "alice",
        "STREAM_TAGGER_SASL_PASSWORD": "s3cret",
    },
    "tls": {"STREAM_TAGGER_SECURITY_PROTOCOL": "SSL", "STREAM_TAGGER_SSL_CHECK_HOSTNAME": "false"},
    "oauth": {
        "STREAM_TAGGER_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAM_TAGGER_SASL_MECHANISM": "OAUTHBEARER",
        "STREAM_TAGGER_OAUTH_TOKEN_ENDPOINT_URL": "https://idp.example.com/token",
        "STREAM_TAGGER_OAUTH_CLIENT_ID": "client",
        "STREAM_TAGGER_OAUTH_CLIENT_SECRET": "s3cret",
        "STREAM_TAGGER_OAUTH_SCOPE": "kafka",
    },
}


@pytest.mark.parametrize("shell", SHELL_SECURITY)
def test_demo_talks_plaintext_to_its_own_broker_whatever_the_shell_has(
    shell: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SHELL_SECURITY[shell].items():
        monkeypatch.setenv(name, value)
    settings = Settings(model_dir=MODELS / "current")  # what the command reads from that shell
    assert settings.security_protocol != "PLAINTEXT"
    clients: list[Settings] = []
    children: list[dict[str, str]] = []

    def wait_for_broker(run: Settings) -> dict[str, int]:
        clients.append(run)
        return {}

    def worker(_command: list[str], env: dict[str, str], *_args: object) -> NoReturn:
        children.append(env)
        raise _Started

    monkeypatch.setattr(demo, "EmbeddedBroker", _FakeBroker)
    monkeypatch.setattr(demo, "wait_for_broker", wait_for_broker)
    monkeypatch.setattr(demo, "ensure_topics", lambda run, existing: [])
    monkeypatch.setattr(demo, "ServiceProcess", worker)
    with pytest.raises(_Started):
        demo.run_demo(settings, events=20, console=Console(file=io.StringIO()), log_dir=tmp_path)
    plaintext = {"bootstrap.servers": _FakeBroker.bootstrap_servers, "security.protocol": "PLAINTEXT"}
    [run] = clients  # the demo's own clients: topic admin, producer, the follower of the outputs
    assert librdkafka_common(run) == plaintext
    assert faust_credentials(run) is None
    [env] = children  # what a worker the demo starts reads its settings from
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert librdkafka_common(Settings()) == plaintext
    assert faust_credentials(Settings()) is None
