"""The Faust app is configured from the same settings as the hot path's librdkafka clients."""

from __future__ import annotations

from faust.types.auth import AuthProtocol

from stream_tagger.app import make_faust_app
from stream_tagger.settings import Settings


def test_faust_app_uses_broker_group_and_web_settings() -> None:
    app = make_faust_app(
        Settings(
            bootstrap_servers="k1:9092,k2:9092", consumer_group="g", web_port=7000, session_timeout_ms=6_000
        )
    )
    assert app.conf.id == "g-app"
    assert [str(url) for url in app.conf.broker] == ["kafka://k1:9092", "kafka://k2:9092"]
    assert app.conf.web_port == 7000
    assert app.conf.broker_session_timeout == 6.0
    assert app.conf.broker_credentials is None


def test_sasl_login_reaches_faust_too() -> None:
    settings = Settings(
        security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p"
    )
    credentials = make_faust_app(settings).conf.broker_credentials
    assert credentials.protocol == AuthProtocol.SASL_SSL
    assert (credentials.username, credentials.password) == ("u", "p")
