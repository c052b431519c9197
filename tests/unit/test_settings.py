"""Settings are strict: an unknown variable, a bad value or contradicting settings is one line naming the
variable; secrets come from the environment or from files and are never shown."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from hypothesis import given
from hypothesis import strategies as st

from stream_tagger import settings as settings_module
from stream_tagger.kafka.config import consumer_config, producer_config
from stream_tagger.settings import MASK, NOT_SETTINGS, Settings, SettingsError
from tests.certs import KEY_PASSWORD, Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def error_of(
    monkeypatch: pytest.MonkeyPatch | None = None, env: dict[str, str] | None = None, **values: object
) -> str:
    for name, value in (env or {}).items():
        assert monkeypatch is not None
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        Settings(**values)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_a_misspelt_variable_is_named_with_the_setting_it_was_meant_to_be(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = error_of(monkeypatch, {"STREAM_TAGGER_BOOTSTRAP_SERVER": "kafka:9092"})
    assert message.startswith(
        "STREAM_TAGGER_BOOTSTRAP_SERVER: not a setting (did you mean STREAM_TAGGER_BOOTSTRAP_SERVERS?)"
    )


def test_unknown_variables_are_found_whatever_their_case(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "stream_tagger_nonsense: not a setting;" in error_of(monkeypatch, {"stream_tagger_nonsense": "1"})


def test_the_documented_non_settings_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NOT_SETTINGS:
        monkeypatch.setenv(name, "127.0.0.1:9092")
    Settings()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("STREAM_TAGGER_THRESHOLD", "abc", "STREAM_TAGGER_THRESHOLD='abc': Input should be a valid number"),
        ("STREAM_TAGGER_WEB_PORT", "abc", "STREAM_TAGGER_WEB_PORT='abc': Input should be a valid integer"),
        (
            "STREAM_TAGGER_WEB_PORT",
            "70000",
            "STREAM_TAGGER_WEB_PORT='70000': Input should be less than or equal",
        ),
        ("STREAM_TAGGER_LOG_LEVEL", "LOUD", "STREAM_TAGGER_LOG_LEVEL='LOUD': Input should be 'DEBUG'"),
        ("STREAM_TAGGER_SECURITY_PROTOCOL", "TLS", "STREAM_TAGGER_SECURITY_PROTOCOL='TLS': Input should be"),
        ("STREAM_TAGGER_KAFKA_EXTRA", "{oops", "STREAM_TAGGER_KAFKA_EXTRA: not JSON"),
        # The feedback worker's sweep subtracts these from today: refused at start, not at each sweep.
        (
            "STREAM_TAGGER_FEEDBACK_RETENTION_DAYS",
            "inf",
            "STREAM_TAGGER_FEEDBACK_RETENTION_DAYS='inf': Input should be less than or equal to 36500",
        ),
        (
            "STREAM_TAGGER_FEEDBACK_PENDING_RETENTION_DAYS",
            "1000000",
            "STREAM_TAGGER_FEEDBACK_PENDING_RETENTION_DAYS='1000000': Input should be less than or equal",
        ),
        # Waits between attempts to reach the broker: threading refuses a timeout past TIMEOUT_MAX.
        (
            "STREAM_TAGGER_BROKER_RETRY_SECONDS",
            "inf",
            "STREAM_TAGGER_BROKER_RETRY_SECONDS='inf': Input should be less than or equal to 3600",
        ),
        (
            "STREAM_TAGGER_BROKER_RETRY_MAX_SECONDS",
            "1e12",
            "STREAM_TAGGER_BROKER_RETRY_MAX_SECONDS='1e12': Input should be less than or equal to 3600",
        ),
        # A consume timeout, which a stop waits for.
        (
            "STREAM_TAGGER_BATCH_MAX_WAIT_MS",
            "1e12",
            "STREAM_TAGGER_BATCH_MAX_WAIT_MS='1e12': Input should be less than or equal to 60000",
        ),
        # Thousands of parts per batch, each with a fixed cost.
        (
            "STREAM_TAGGER_PARTIAL_BATCH_PART_SIZE",
            "1",
            "STREAM_TAGGER_PARTIAL_BATCH_PART_SIZE='1': 0 (never split) or at least 128 events",
        ),
    ],
)
def test_a_bad_value_names_its_variable_and_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    assert error_of(monkeypatch, {variable: value}).startswith(expected)


def test_every_bad_value_is_in_the_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error_of(monkeypatch, {"STREAM_TAGGER_THRESHOLD": "abc", "STREAM_TAGGER_TOP_K": "9"})
    assert "STREAM_TAGGER_THRESHOLD='abc'" in message and "; STREAM_TAGGER_TOP_K='9'" in message


def test_a_keyword_argument_is_named_as_passed() -> None:
    assert error_of(batch_max_size=0).startswith(
        "batch_max_size=0: Input should be greater than or equal to 1"
    )


def test_case_of_enumerations_does_not_matter() -> None:
    settings = Settings(
        security_protocol="sasl_ssl",
        sasl_mechanism="scram-sha-512",
        sasl_username="u",
        sasl_password="p",
        log_level="debug",
    )
    assert (settings.security_protocol, settings.sasl_mechanism, settings.log_level) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "DEBUG",
    )


# --- secrets ---


def test_secrets_are_masked_in_the_printed_settings_and_the_repr() -> None:
    settings = Settings(
        security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u", sasl_password="hunter2"
    )
    environment = settings.as_environment()
    assert environment["STREAM_TAGGER_SASL_PASSWORD"] == MASK
    assert environment["STREAM_TAGGER_SASL_USERNAME"] == "u"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(environment)


def test_the_printed_settings_cover_every_setting_and_read_back_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(kafka_extra={"client.rack": "a"}, threshold=0.9, feedback_in_worker=True)
    environment = settings.as_environment(mask_secrets=False)
    assert set(environment) == {f"STREAM_TAGGER_{name.upper()}" for name in Settings.model_fields}
    for name, value in environment.items():  # unset ones too, as ''
        monkeypatch.setenv(name, value)
    assert Settings() == settings


def test_an_empty_value_unsets_a_setting_that_can_be_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MIN_INSYNC_REPLICAS", "THRESHOLD", "SSL_CA_FILE", "BROKER_WAIT_LIMIT_SECONDS"):
        monkeypatch.setenv(f"STREAM_TAGGER_{name}", "")
    settings = Settings()
    assert settings.min_insync_replicas is None  # the broker's default
    assert (settings.threshold, settings.ssl_ca_file, settings.broker_wait_limit_seconds) == (
        None,
        None,
        None,
    )
    assert error_of(monkeypatch, {"STREAM_TAGGER_TOP_K": ""}).startswith("STREAM_TAGGER_TOP_K='': Input")


def test_a_secret_is_read_from_the_file_its_file_variable_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")  # as `echo s3cret > password` writes it
    monkeypatch.setenv("STREAM_TAGGER_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STREAM_TAGGER_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("STREAM_TAGGER_SASL_USERNAME", "tagger")
    monkeypatch.setenv("STREAM_TAGGER_SASL_PASSWORD_FILE", str(secret))
    settings = Settings()
    assert settings.sasl_password is not None and settings.sasl_password.get_secret_value() == "s3cret"
    assert settings.kafka_common()["sasl.password"] == "s3cret"
    # the same value in the variable too is no contradiction; another one is
    monkeypatch.setenv("STREAM_TAGGER_SASL_PASSWORD", "s3cret")
    Settings()
    monkeypatch.setenv("STREAM_TAGGER_SASL_PASSWORD", "other")
    message = error_of()
    assert "STREAM_TAGGER_SASL_PASSWORD and STREAM_TAGGER_SASL_PASSWORD_FILE are both set" in message
    assert "other" not in message and "s3cret" not in message


def test_a_missing_or_empty_secret_file_is_named(tmp_path: Path) -> None:
    login = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u"}
    assert error_of(**login, sasl_password_file=tmp_path / "nope").startswith(
        f"sasl_password_file='{tmp_path / 'nope'}': Path does not point to a file"
    )
    (tmp_path / "empty").write_text("\n")
    assert f"STREAM_TAGGER_SASL_PASSWORD_FILE: {tmp_path / 'empty'} is empty" in error_of(
        **login, sasl_password_file=tmp_path / "empty"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PLAINTEXT://k1:9092", "PLAINTEXT://k1:9092: give host:port without a protocol"),
        ("k1:9092,", "an empty entry"),
        ("", "an empty entry"),
        ("k1:9092;k2:9092", "k1:9092;k2:9092 is not host or host:port"),
        ("k1:0", "k1:0 is not host or host:port"),
        ("k 1:9092", "k 1:9092 is not host or host:port"),
        # Faust's URL parser (yarl) takes only an IPv6 address in brackets
        ("[10.0.0.1]:9092", "[10.0.0.1]:9092 is not host or host:port"),
        ("[10.0.0.1]", "[10.0.0.1] is not host or host:port"),
        ("[1:2:3]:9092", "[1:2:3]:9092 is not host or host:port"),
        ("k1:\u0663", "k1:\u0663 is not host or host:port"),  # an Arabic-Indic 3: str.isdigit() takes it
    ],
)
def test_the_broker_list_is_host_port_entries(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    """librdkafka and Faust read anything else differently (Faust: "plaintext:9092", 127.0.0.1:9092)."""
    message = error_of(monkeypatch, {"STREAM_TAGGER_BOOTSTRAP_SERVERS": value})
    assert message.startswith(f"STREAM_TAGGER_BOOTSTRAP_SERVERS='{value}': {expected}")


def test_the_broker_list_is_the_same_for_every_client() -> None:
    settings = Settings(bootstrap_servers=" k1:9092 , [::1]:9093, kafka-2.kafka")
    assert settings.brokers() == ["k1:9092", "[::1]:9093", "kafka-2.kafka:9092"]  # Kafka's port by default
    assert settings.kafka_common()["bootstrap.servers"] == "k1:9092,[::1]:9093,kafka-2.kafka:9092"


# --- Kafka security: what cannot work is refused at start ---


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"security_protocol": "SASL_SSL"}, "STREAM_TAGGER_SASL_MECHANISM must be set with SASL_SSL"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u"},
            "STREAM_TAGGER_SASL_PASSWORD must be set with SCRAM-SHA-512",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", "oauth_client_id": "c"},
            "STREAM_TAGGER_OAUTH_TOKEN_ENDPOINT_URL and STREAM_TAGGER_OAUTH_CLIENT_SECRET must be set with "
            "OAUTHBEARER",
        ),
        (
            {"sasl_mechanism": "PLAIN"},
            "STREAM_TAGGER_SASL_MECHANISM is set but not used: STREAM_TAGGER_SECURITY_PROTOCOL is PLAINTEXT",
        ),
        (
            {"sasl_username": "u"},
            "STREAM_TAGGER_SASL_USERNAME is set but not used: STREAM_TAGGER_SECURITY_PROTOCOL is PLAINTEXT",
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_username": "u",
                "oauth_token_endpoint_url": "https://idp/token",
                "oauth_client_id": "c",
                "oauth_client_secret": "s",
            },
            "STREAM_TAGGER_SASL_USERNAME is set but not used: STREAM_TAGGER_SASL_MECHANISM is OAUTHBEARER",
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": "p",
                "ssl_check_hostname": False,
                "ssl_key_password": "k",
            },
            "STREAM_TAGGER_SSL_KEY_PASSWORD is set but not used: "
            "STREAM_TAGGER_SECURITY_PROTOCOL is SASL_PLAINTEXT",
        ),
    ],
)
def test_security_settings_that_cannot_work_are_refused(values: dict[str, object], expected: str) -> None:
    assert error_of(**values) == expected


OIDC = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "OAUTHBEARER",
    "oauth_token_endpoint_url": "https://idp/token",
    "oauth_client_id": "c",
    "oauth_client_secret": "s",
}


def test_an_oauth_client_id_with_a_colon_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faust's token provider could not be made: HTTP Basic authentication's user-id has no ':'."""
    values = {name: value for name, value in OIDC.items() if name != "oauth_client_id"}
    message = error_of(monkeypatch, {"STREAM_TAGGER_OAUTH_CLIENT_ID": "tenant:client"}, **values)
    assert message.startswith("STREAM_TAGGER_OAUTH_CLIENT_ID='tenant:client': a ':' is not allowed")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://svc:Sup3rSecret@idp/token", "a user name or password in the URL is not allowed"),
        ("https://Sup3rSecret@idp/token", "a user name or password in the URL is not allowed"),
        (
            "https://idp/token?p=B2C_1_signin&client_secret=Sup3rSecret",
            "a query parameter whose name says it holds a secret in the URL is not allowed",
        ),
        ("https://idp/token?Sup3rSecret_password", "a query parameter whose name says it holds a secret"),
        ("https://idp/token?p=x;client_assertion=Sup3rSecret", "a query parameter whose name says it holds"),
        ("https://idp/token#Sup3rSecret", "a fragment in the URL is not allowed"),
        ("https://svc:Sup3rSecret@idp:x/token", "Input should be a valid URL"),
    ],
)
def test_a_token_endpoint_url_that_may_hold_a_secret_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    """`stream-tagger config` and the token errors show the URL; aiohttp refuses credentials in it."""
    values = {name: value for name, value in OIDC.items() if name != "oauth_token_endpoint_url"}
    message = error_of(monkeypatch, {"STREAM_TAGGER_OAUTH_TOKEN_ENDPOINT_URL": url}, **values)
    assert message.startswith(f"STREAM_TAGGER_OAUTH_TOKEN_ENDPOINT_URL: {expected}")
    assert "Sup3rSecret" not in message


def test_a_token_endpoint_url_may_name_a_policy_in_its_query() -> None:
    url = "https://tenant.b2clogin.com/tenant.onmicrosoft.com/oauth2/v2.0/token?p=B2C_1_client"
    settings = Settings(**{**OIDC, "oauth_token_endpoint_url": url})
    assert str(settings.oauth_token_endpoint_url) == url


def test_sasl_extensions_are_read_as_librdkafka_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(**OIDC).oauth_extension_pairs() == {}
    monkeypatch.setenv("STREAM_TAGGER_OAUTH_EXTENSIONS", "logicalCluster=lkc-abc12,identityPoolId=pool-X=9")
    assert Settings(**OIDC).oauth_extension_pairs() == {
        "logicalCluster": "lkc-abc12",
        "identityPoolId": "pool-X=9",
    }
    assert error_of(oauth_extensions="a=b") == (
        "STREAM_TAGGER_OAUTH_EXTENSIONS is set but not used: STREAM_TAGGER_SECURITY_PROTOCOL is PLAINTEXT"
    )


@pytest.mark.parametrize(
    ("value", "pair"),
    [
        ("logicalCluster", "'logicalCluster'"),
        ("a=1,,b=2", "''"),
        ("logical cluster=1", "'logical cluster=1'"),
        ("pool1=x", "'pool1=x'"),  # keys are letters only
        ("a=", "'a='"),
        ("a=1\x01", "'a=1\\x01'"),  # 0x01 separates extensions on the wire
        ("a=é", "'a=é'"),
        ("a=x\\,b=y", "'a=x\\\\'"),  # librdkafka would read one pair, a="x,b=y"
        ("a=b ,c=d", "'a=b '"),  # librdkafka would send "b", aiokafka "b "
        ("a= b", "'a= b'"),
    ],
)
def test_a_malformed_sasl_extension_is_refused_naming_the_pair(value: str, pair: str) -> None:
    message = error_of(**OIDC, oauth_extensions=value)
    assert message.startswith(f"oauth_extensions={value!r}: {pair} is not key=value (a key of letters")
    assert "\n" not in message


def test_auth_and_a_repeated_key_are_refused() -> None:
    assert error_of(**OIDC, oauth_extensions="auth=Bearer x").endswith(
        "'auth' is the token's own key (RFC 7628), not an extension"
    )
    assert error_of(**OIDC, oauth_extensions="a=1,b=2,a=3").endswith("'a' is given twice")


def librdkafka_extensions(value: str) -> list[tuple[str, str]]:
    """How librdkafka reads sasl.oauthbearer.extensions, for values without its escape ('\\'): split at
    ',', each pair trimmed, then split at its first '='."""
    return [(key, item) for key, _equals, item in (pair.strip().partition("=") for pair in value.split(","))]


# Mostly well-formed pairs; a digit or space in a key, a ',', '\\', DEL or edge space in a value now and then.
KEYS = st.text(string.ascii_letters + "1 ", min_size=1, max_size=3)
VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7F), min_size=1, max_size=6)


@given(st.lists(st.tuples(KEYS, VALUES), max_size=4) | st.text(max_size=30))
def test_any_extensions_are_taken_as_both_clients_send_them_or_refused_in_one_line(
    drawn: list[tuple[str, str]] | str,
) -> None:
    value = drawn if isinstance(drawn, str) else ",".join(f"{key}={item}" for key, item in drawn)
    try:
        settings = Settings(**OIDC, oauth_extensions=value)
    except SettingsError as exc:
        assert "\n" not in str(exc)
        return
    if settings.oauth_extensions is None:  # empty: unset
        assert value == ""
        return
    sent_by_librdkafka = librdkafka_extensions(value)
    assert list(settings.oauth_extension_pairs().items()) == sent_by_librdkafka  # aiokafka's
    if not isinstance(drawn, str):
        assert sent_by_librdkafka == drawn


def test_tls_files_are_loaded_at_start(certs: Certs) -> None:
    tls = {"security_protocol": "SSL", "ssl_ca_file": certs.ca}
    Settings(**tls, ssl_cert_file=certs.client_cert, ssl_key_file=certs.client_key)
    Settings(
        **tls,
        ssl_cert_file=certs.client_cert,
        ssl_key_file=certs.client_key_encrypted,
        ssl_key_password=KEY_PASSWORD,
    )
    assert error_of(**tls, ssl_cert_file=certs.client_cert) == (
        "STREAM_TAGGER_SSL_CERT_FILE and STREAM_TAGGER_SSL_KEY_FILE go together (mutual TLS)"
    )
    assert error_of(security_protocol="SSL", ssl_ca_file=certs.client_key).startswith(
        f"STREAM_TAGGER_SSL_CA_FILE: no PEM certificate in {certs.client_key}"
    )
    # a key of another certificate, an encrypted key without its password or with a wrong one
    for key, password in (
        (certs.directory / "broker.key", None),
        (certs.client_key_encrypted, None),
        (certs.client_key_encrypted, "wrong"),
    ):
        message = error_of(
            **tls, ssl_cert_file=certs.client_cert, ssl_key_file=key, ssl_key_password=password
        )
        assert message.startswith(
            "STREAM_TAGGER_SSL_CERT_FILE and STREAM_TAGGER_SSL_KEY_FILE: cannot use "
            f"{certs.client_cert} with {key}"
        )
        assert "wrong" not in message.split("(")[0]


# --- the librdkafka pass-through ---


def test_extra_properties_come_as_json_and_reach_librdkafka_as_strings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "STREAM_TAGGER_KAFKA_EXTRA", '{"client.rack": "use1-az1", "socket.keepalive.enable": true}'
    )
    monkeypatch.setenv(
        "STREAM_TAGGER_KAFKA_PRODUCER_EXTRA", '{"compression.type": "zstd", "batch.size": 65536}'
    )
    settings = Settings()
    assert settings.kafka_extra == {"client.rack": "use1-az1", "socket.keepalive.enable": "true"}
    assert settings.kafka_producer_extra == {"compression.type": "zstd", "batch.size": "65536"}


@pytest.mark.parametrize(
    ("setting", "properties", "expected"),
    [
        (
            "kafka_extra",
            '{"bootstrap.servers": "x:1"}',
            "bootstrap.servers is set by STREAM_TAGGER_BOOTSTRAP_SERVERS",
        ),
        ("kafka_extra", '{"sasl.password": "x"}', "sasl.password is set by STREAM_TAGGER_SASL_PASSWORD"),
        (
            "kafka_extra",
            '{"sasl.oauthbearer.extensions": "a=b"}',
            "sasl.oauthbearer.extensions is set by STREAM_TAGGER_OAUTH_EXTENSIONS",
        ),
        (
            "kafka_consumer_extra",
            '{"enable.auto.offset.store": "true"}',
            "enable.auto.offset.store is set by the delivery guarantee",
        ),
        (  # the hot path's consumer would apply "earliest" over it all the same
            "kafka_consumer_extra",
            '{"auto.offset.reset": "latest"}',
            "auto.offset.reset is set by the worker, which starts a new group at the earliest offset",
        ),
        (
            "kafka_producer_extra",
            '{"partitioner": "consistent_random"}',
            "partitioner is set by Kafka's Java default partitioner",
        ),
        (
            "kafka_producer_extra",
            '{"message.max.bytes": 500000}',  # a dead letter could be over it: the hot path would stop
            "message.max.bytes: a whole number of bytes in decimal digits, from 1,000,000",
        ),
        ("kafka_extra", '{"client.token": "x"}', "client.token looks like a secret"),
        (
            "kafka_producer_extra",
            '{"delivery.report.only.error": false}',
            "delivery.report.only.error is confluent-kafka's own property",
        ),
        ("kafka_producer_extra", '{"error_cb": "x"}', "error_cb is confluent-kafka's own property"),
        ("kafka_consumer_extra", '{"stats_cb": "x"}', "stats_cb is confluent-kafka's own property"),
        ("kafka_extra", '["client.rack"]', "a JSON object of librdkafka properties"),
    ],
)
def test_extra_properties_that_a_setting_owns_or_that_hold_secrets_are_refused(
    monkeypatch: pytest.MonkeyPatch, setting: str, properties: str, expected: str
) -> None:
    message = error_of(monkeypatch, {f"STREAM_TAGGER_{setting.upper()}": properties})
    assert message.startswith(f"STREAM_TAGGER_{setting.upper()}: ")
    assert expected in message


@pytest.mark.parametrize(
    ("key", "instead"),
    [
        ("enable.ssl.certificate.verification", "STREAM_TAGGER_SECURITY_PROTOCOL and STREAM_TAGGER_SSL_*"),
        ("ssl.crl.location", "STREAM_TAGGER_SECURITY_PROTOCOL and STREAM_TAGGER_SSL_*"),
        ("ssl.cipher.suites", "STREAM_TAGGER_SECURITY_PROTOCOL and STREAM_TAGGER_SSL_*"),
        ("https.ca.location", "STREAM_TAGGER_SECURITY_PROTOCOL and STREAM_TAGGER_SSL_*"),
        ("sasl.oauthbearer.grant.type", "STREAM_TAGGER_SASL_* and STREAM_TAGGER_OAUTH_*"),
        ("sasl.oauthbearer.metadata.authentication.type", "STREAM_TAGGER_SASL_* and STREAM_TAGGER_OAUTH_*"),
        (
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "STREAM_TAGGER_SASL_* and STREAM_TAGGER_OAUTH_*",
        ),
        ("enable.sasl.oauthbearer.unsecure.jwt", "STREAM_TAGGER_SASL_* and STREAM_TAGGER_OAUTH_*"),
    ],
)
@pytest.mark.parametrize("setting", ["kafka_extra", "kafka_producer_extra", "kafka_consumer_extra"])
def test_connection_and_security_properties_are_refused_whatever_their_name(
    monkeypatch: pytest.MonkeyPatch, setting: str, key: str, instead: str
) -> None:
    """librdkafka's clients would apply them and Faust's would not: the halves of a process would
    connect differently (no TLS verification on the hot path only, say)."""
    message = error_of(monkeypatch, {f"STREAM_TAGGER_{setting.upper()}": f'{{"{key}": "hunter2"}}'})
    assert message == (
        f"STREAM_TAGGER_{setting.upper()}: {key} would reach librdkafka's clients but not Faust's; "
        f"connection and security come from {instead}, which reach both"
    )


@pytest.mark.parametrize(
    "properties",
    [
        '{"ssl.keystore.password": "hunter2"}',
        '{"client.rack": "hunter2", "compression.type": "hunter2"}',
        '{"client.rack": ["hunter2"]}',
        '{"client.rack": "hunter2",, }',
        '{"fetch.min.bytes": "hunter2"}',
    ],
)
def test_an_error_in_the_pass_through_never_shows_its_values(
    monkeypatch: pytest.MonkeyPatch, properties: str
) -> None:
    message = error_of(monkeypatch, {"STREAM_TAGGER_KAFKA_CONSUMER_EXTRA": properties})
    assert message.startswith("STREAM_TAGGER_KAFKA_CONSUMER_EXTRA: ")
    assert "hunter2" not in message


def test_printed_settings_mask_a_property_that_looks_secret() -> None:
    extra = {"client.rack": "a", "x.private.key.passphrase": "hunter2", "y.token": "hunter2"}
    settings = Settings().model_copy(update={"kafka_extra": extra})
    assert settings.as_environment()["STREAM_TAGGER_KAFKA_EXTRA"] == (
        f'{{"client.rack": "a", "x.private.key.passphrase": "{MASK}", "y.token": "{MASK}"}}'
    )


def test_librdkafka_checks_the_extra_properties_names_and_values() -> None:
    assert error_of(kafka_extra={"client.rak": "a"}) == (
        'STREAM_TAGGER_KAFKA_EXTRA: No such configuration property: "client.rak"'
    )
    assert error_of(kafka_consumer_extra={"fetch.min.bytes": "many"}) == (
        "STREAM_TAGGER_KAFKA_CONSUMER_EXTRA: librdkafka refuses a value of fetch.min.bytes"
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"compression.type": 'x"hunter2'},  # librdkafka quotes it: Invalid value "x"hunter2"
        {"batch.num.messages": "99999999999"},  # and shows it wrapped: value 1215752191 is outside
        {"plugin.library.paths": "hunter2"},  # and in dlopen()'s message: failed: hunter2.so
    ],
)
def test_librdkafka_never_shows_a_refused_value(extra: dict[str, str]) -> None:
    assert (
        error_of(kafka_extra=extra)
        == f"STREAM_TAGGER_KAFKA_EXTRA: librdkafka refuses a value of {next(iter(extra))}"
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"kafka_consumer_extra": {"group.protocol": "consumer"}},
            "STREAM_TAGGER_KAFKA_CONSUMER_EXTRA: `session.timeout.ms` is not supported for "
            "`group.protocol=consumer`",
        ),
        (
            {"kafka_extra": {"group.protocol": "consumer"}},
            "STREAM_TAGGER_KAFKA_EXTRA: `session.timeout.ms` is not supported",
        ),
        (
            {"kafka_consumer_extra": {"fetch.min.bytes": 0}},
            'STREAM_TAGGER_KAFKA_CONSUMER_EXTRA: Configuration property "fetch.min.bytes" value is outside',
        ),
    ],
)
def test_the_pass_through_is_checked_with_the_clients_whole_configuration(
    values: dict[str, object], expected: str
) -> None:
    """What librdkafka refuses only beside the settings' own properties fails at start, not when the
    hot path makes its clients after the model load and the group join."""
    assert error_of(**values).startswith(expected)


def test_checking_the_pass_through_connects_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, object]] = []

    class Producer(settings_module.Producer):  # type: ignore[misc]
        def __init__(self, conf: dict[str, object]) -> None:
            made.append(conf)
            super().__init__(conf)

    class Consumer(settings_module.Consumer):  # type: ignore[misc]
        def __init__(self, conf: dict[str, object]) -> None:
            made.append(conf)
            super().__init__(conf)

    monkeypatch.setattr(settings_module, "Producer", Producer)
    monkeypatch.setattr(settings_module, "Consumer", Consumer)
    Settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        oauth_token_endpoint_url="https://idp.invalid/token",
        oauth_client_id="c",
        oauth_client_secret="s",
        kafka_extra={"client.rack": "a"},
        kafka_producer_extra={"compression.type": "zstd"},
        kafka_consumer_extra={"fetch.min.bytes": 2},
    )
    assert len(made) == 5
    for conf in made:
        assert not any(key == "bootstrap.servers" or key.startswith(("sasl.", "ssl.")) for key in conf)


# --- the consumer group ---


def test_the_delivery_timeout_stays_below_the_poll_interval() -> None:
    Settings(delivery_timeout_ms=290_000, max_poll_interval_ms=300_000)
    assert error_of(delivery_timeout_ms=295_000).startswith(
        "STREAM_TAGGER_DELIVERY_TIMEOUT_MS (295000) must be at least 10000 below "
        "STREAM_TAGGER_MAX_POLL_INTERVAL_MS (300000)"
    )


@pytest.mark.parametrize(
    ("variable", "value", "limit"),
    [
        ("STREAM_TAGGER_SESSION_TIMEOUT_MS", "4000000", "3600000"),
        ("STREAM_TAGGER_MAX_POLL_INTERVAL_MS", "90000000", "86400000"),
        ("STREAM_TAGGER_FETCH_WAIT_MAX_MS", "400000", "300000"),
        ("STREAM_TAGGER_LINGER_MS", "1000000", "900000"),
        ("STREAM_TAGGER_CONSUMER_PREFETCH_KBYTES", "3000000", "2097151"),
        ("STREAM_TAGGER_CONSUMER_PREFETCH_MESSAGES", "20000000", "10000000"),
        ("STREAM_TAGGER_FETCH_PARTITION_MAX_KBYTES", "2000000", "976562"),
        ("STREAM_TAGGER_FETCH_MAX_KBYTES", "3000000", "2097151"),
        ("STREAM_TAGGER_FETCH_QUEUE_BACKOFF_MS", "400000", "300000"),
        ("STREAM_TAGGER_LAG_INTERVAL_MS", "90000000", "86400000"),
    ],
)
def test_values_librdkafka_would_refuse_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, limit: str
) -> None:
    message = error_of(monkeypatch, {variable: value})
    assert message.startswith(f"{variable}='{value}': Input should be less than or equal to {limit}")


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_librdkafka_takes_the_largest_values_the_settings_allow(guarantee: str) -> None:
    settings = Settings(
        session_timeout_ms=3_600_000,
        heartbeat_interval_ms=1_200_000,
        max_poll_interval_ms=86_400_000,
        delivery_timeout_ms=86_390_000,
        processing_guarantee=guarantee,
        transaction_timeout_ms=2_147_483_647,
        linger_ms=900_000,
        consumer_prefetch_kbytes=2_097_151,
        consumer_prefetch_messages=10_000_000,
        fetch_queue_backoff_ms=300_000,
        fetch_max_kbytes=2_097_151,
        fetch_partition_max_kbytes=976_562,
        lag_interval_ms=86_400_000,
        fetch_wait_max_ms=300_000,
    )
    nowhere = {"bootstrap.servers": ""}
    Producer(producer_config(settings, on_delivery=lambda _error, _message: None) | nowhere)
    Consumer(consumer_config(settings, on_stats=lambda _stats: None) | nowhere).close()


def test_heartbeats_come_within_the_session_and_the_poll_interval_outlasts_it() -> None:
    Settings(session_timeout_ms=6_000, heartbeat_interval_ms=3_000)  # librdkafka takes it too
    assert error_of(session_timeout_ms=10_000, heartbeat_interval_ms=10_000) == (
        "STREAM_TAGGER_HEARTBEAT_INTERVAL_MS (10000) must be below STREAM_TAGGER_SESSION_TIMEOUT_MS (10000)"
    )
    assert error_of(session_timeout_ms=400_000) == (
        "STREAM_TAGGER_MAX_POLL_INTERVAL_MS (300000) must be at least "
        "STREAM_TAGGER_SESSION_TIMEOUT_MS (400000)"
    )


@pytest.mark.parametrize("name", ["content raw", "content/raw", "x" * 250, "", ".."])
def test_a_topic_name_kafka_would_refuse_is_refused(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    message = error_of(monkeypatch, {"STREAM_TAGGER_TOPIC_DEAD_LETTER": name})
    assert message.startswith("STREAM_TAGGER_TOPIC_DEAD_LETTER=")
    assert message.endswith("a topic name is 1 to 249 of A-Z, a-z, 0-9, '.', '_' and '-'")


def test_each_role_has_its_own_topic() -> None:
    Settings(topic_raw="a" * 249)
    assert error_of(topic_dead_letter="content.raw.v1") == (
        "STREAM_TAGGER_TOPIC_RAW and STREAM_TAGGER_TOPIC_DEAD_LETTER are both content.raw.v1: each role "
        "needs its own topic"
    )


def test_min_insync_replicas_within_the_replication_factor() -> None:
    assert error_of(replication_factor=1).startswith(
        "STREAM_TAGGER_MIN_INSYNC_REPLICAS (2) exceeds STREAM_TAGGER_REPLICATION_FACTOR (1)"
    )


def test_topics_are_durable_by_default() -> None:
    settings = Settings()
    assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)


def test_a_producer_linger_beyond_its_messages_timeout_is_refused_naming_both() -> None:
    """librdkafka would refuse it only as the hot path makes its producer, and blame the pass-through."""
    assert error_of(linger_ms=200_000, kafka_extra={"client.rack": "a"}) == (
        "STREAM_TAGGER_LINGER_MS (200000) must be below STREAM_TAGGER_DELIVERY_TIMEOUT_MS (120000)"
    )
    assert error_of(linger_ms=20_000, processing_guarantee="exactly_once") == (
        "STREAM_TAGGER_LINGER_MS (20000) must be below STREAM_TAGGER_TRANSACTION_TIMEOUT_MS (10000)"
    )


@pytest.mark.parametrize("group", ["tagging team/prod", "x" * 201, ""])
def test_a_consumer_group_faust_could_not_name_its_topics_after_is_refused(
    monkeypatch: pytest.MonkeyPatch, group: str
) -> None:
    message = error_of(monkeypatch, {"STREAM_TAGGER_CONSUMER_GROUP": group})
    assert message.startswith("STREAM_TAGGER_CONSUMER_GROUP=") and "should match pattern" in message


def test_message_max_bytes_may_be_raised_not_lowered() -> None:
    assert Settings(kafka_producer_extra={"message.max.bytes": "5000000"}).kafka_producer_extra == {
        "message.max.bytes": "5000000"
    }
    raised = Settings(kafka_producer_extra={"message.max.bytes": 1_000_000_000})  # librdkafka's largest
    assert raised.kafka_producer_extra == {"message.max.bytes": "1000000000"}


@pytest.mark.parametrize(
    "value",
    [
        # librdkafka reads each as 1000 (strtol: base 0, up to the first character it cannot read) ...
        " 1000",
        "1000 ",
        "0x3e8",
        "1000bytes",
        "1e3",
        1e3,  # JSON's 1e3 is "1000.0"
        "4294968296",  # ... and this one as 2**32 + 1000, cut to an int
        "01750",  # octal
        "+1000000",  # at least the floor, but not a plain decimal either
        "1000000.0",
    ],
)
@pytest.mark.parametrize("setting", ["kafka_extra", "kafka_producer_extra"])
def test_message_max_bytes_is_a_plain_number_so_that_the_floor_holds(setting: str, value: object) -> None:
    """A dead letter larger than the limit librdkafka applies would stop the hot path on its offset."""
    assert error_of(**{setting: {"message.max.bytes": value}}) == (
        f"{setting}: message.max.bytes: a whole number of bytes in decimal digits, from 1,000,000 (a "
        "dead letter is sized for librdkafka's default) to 1,000,000,000 (librdkafka's largest)"
    )


def test_a_refused_value_names_only_the_properties_of_the_variable_checked() -> None:
    message = error_of(
        kafka_producer_extra={"compression.type": "zstd"}, kafka_consumer_extra={"fetch.min.bytes": "many"}
    )
    assert message == "STREAM_TAGGER_KAFKA_CONSUMER_EXTRA: librdkafka refuses a value of fetch.min.bytes"
