"""The Faust app is configured from the same settings as the hot path's librdkafka clients."""

from __future__ import annotations

import asyncio
import logging
import platform
import subprocess
import sys

import pytest
from faust.types.auth import AuthProtocol

from stream_tagger import app
from stream_tagger.app import make_faust_app
from stream_tagger.settings import Settings


def test_faust_app_uses_broker_and_group_settings_and_no_web_server() -> None:
    app = make_faust_app(
        Settings(
            bootstrap_servers="k1:9092,k2:9092", consumer_group="g", web_port=0, session_timeout_ms=6_000
        )
    )
    assert app.conf.id == "g-app"
    assert [str(url) for url in app.conf.broker] == ["kafka://k1:9092", "kafka://k2:9092"]
    assert app.conf.broker_session_timeout == 6.0
    assert app.conf.broker_credentials is None
    # port 0 (any free port) is for the process's own server: Faust's is off and never sees it
    assert app.conf.web_enabled is False
    assert app.conf.canonical_url is not None


def test_faust_makes_its_consumer_with_a_long_session_timeout() -> None:
    """Faust refuses a session longer than its request timeout (90 s by default) only as it makes its
    consumer, after the model load."""
    app = make_faust_app(Settings(session_timeout_ms=120_000))

    async def make_consumer() -> None:
        await app.consumer._thread._create_worker_consumer(app.transport).stop()

    asyncio.run(make_consumer())
    assert app.conf.broker_request_timeout > app.conf.broker_session_timeout == 120.0


def test_sasl_login_reaches_faust_too() -> None:
    settings = Settings(
        security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p"
    )
    credentials = make_faust_app(settings).conf.broker_credentials
    assert credentials.protocol == AuthProtocol.SASL_SSL
    assert (credentials.username, credentials.password) == ("u", "p")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tune_malloc tunes glibc only")
def test_memory_a_batch_frees_is_kept_for_the_next() -> None:
    # In a fresh process, with glibc's defaults, this churn faults every page in again each round
    # (20 x 1,536 pages); after tune_malloc, none should be.
    churn = """
import resource, numpy as np
from stream_tagger.app import tune_malloc
tune_malloc()
def churn():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        arrays = [np.ones(n << 20, np.uint8) for n in (3, 2, 1)]  # like a batch's arrays, then freed
        del arrays
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
churn()
print(churn())
"""
    out = subprocess.run([sys.executable, "-c", churn], capture_output=True, text=True, check=True)
    assert int(out.stdout) < 300


def test_a_refused_malloc_threshold_is_logged_and_the_other_left_to_glibc(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    options: list[int] = []

    class RefusingLibc:
        def mallopt(self, option: int, value: int) -> int:
            options.append(option)
            return 0

    monkeypatch.setattr(app.ctypes, "CDLL", lambda name: RefusingLibc())
    with caplog.at_level(logging.WARNING, logger="stream_tagger.app"):
        app.tune_malloc()
    assert options == [-3]  # M_MMAP_THRESHOLD refused: the trim threshold stays glibc's own
    assert "glibc refused M_MMAP_THRESHOLD=33554432" in caplog.text


def test_without_glibc_nothing_is_tuned_or_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def missing(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(app.ctypes, "CDLL", missing)
    with caplog.at_level(logging.DEBUG, logger="stream_tagger.app"):
        app.tune_malloc()
    assert caplog.records == []
