"""Start-up errors of the in-process worker entry point, on a real broker: each names what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stream_tagger.cli import app
from stream_tagger.kafka.embedded_broker import free_port
from stream_tagger.model.versions import ModelLoadError
from stream_tagger.service import run_worker
from stream_tagger.settings import Settings

pytestmark = pytest.mark.integration


def test_a_missing_shadow_model_is_named_as_the_shadow(settings: Settings, tmp_path: Path) -> None:
    shadow = tmp_path / "no-shadow"
    with pytest.raises(ModelLoadError, match=f"shadow model: {shadow}"):
        run_worker(settings.model_copy(update={"shadow_model_dir": shadow, "web_port": free_port()}))


def test_the_cli_reports_a_missing_shadow_model_in_one_line(settings: Settings, tmp_path: Path) -> None:
    shadow = tmp_path / "no-shadow"
    env = {
        "STREAM_TAGGER_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "STREAM_TAGGER_TOPIC_RAW": settings.topic_raw,
        "STREAM_TAGGER_SHADOW_MODEL_DIR": str(shadow),
        "STREAM_TAGGER_WEB_PORT": str(free_port()),
        "STREAM_TAGGER_REPLICATION_FACTOR": "1",
        "STREAM_TAGGER_MIN_INSYNC_REPLICAS": "1",
    }
    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exit_code == 1
    assert "cannot load the model: shadow model:" in " ".join(result.output.split())


def test_durable_defaults_on_a_one_broker_cluster_say_what_to_set(settings: Settings) -> None:
    env = {
        "STREAM_TAGGER_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "STREAM_TAGGER_TOPIC_RAW": settings.topic_raw,
        "STREAM_TAGGER_WEB_PORT": str(free_port()),
    }  # replication factor 3 and min.insync.replicas 2, the defaults
    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert f"cannot create topic {settings.topic_raw}" in line
    assert "STREAM_TAGGER_REPLICATION_FACTOR" in line
