"""Every Kafka client's configuration comes from the one Settings: librdkafka accepts it at the settings'
bounds and with every security setting, Faust's aiokafka client gets the same connection, and every
producer puts a key on the partition Kafka's Java client would choose."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import faust
import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list

from stream_tagger.app import make_faust_app
from stream_tagger.kafka.config import (
    JAVA_PARTITIONER,
    OidcTokenProvider,
    TokenError,
    admin_config,
    consumer_common,
    consumer_config,
    faust_credentials,
    librdkafka_common,
    producer_common,
    producer_config,
)
from stream_tagger.settings import Settings, SettingsError
from stream_tagger.tools.produce import make_producer
from tests.certs import KEY_PASSWORD, Certs, make_certs

FLOORS = {
    "consumer_prefetch_kbytes": 64,
    "consumer_prefetch_messages": 1,
    "fetch_queue_backoff_ms": 1,
    "fetch_max_kbytes": 1_024,
    "fetch_partition_max_kbytes": 16,
}
NOWHERE = "127.0.0.1:1"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def secured(certs: Certs) -> dict[str, Settings]:
    """One Settings per way of connecting, all pointing nowhere."""
    tls = {"bootstrap_servers": NOWHERE, "ssl_ca_file": certs.ca}
    return {
        "mtls": Settings(
            **tls,
            security_protocol="SSL",
            ssl_cert_file=certs.client_cert,
            ssl_key_file=certs.client_key_encrypted,
            ssl_key_password=KEY_PASSWORD,
        ),
        "scram": Settings(
            **tls,
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="tagger",
            sasl_password="s3cret",
            ssl_check_hostname=False,
        ),
        "plain": Settings(
            bootstrap_servers=NOWHERE,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_username="tagger",
            sasl_password="s3cret",
        ),
        "oauth": Settings(
            **tls,
            security_protocol="SASL_SSL",
            sasl_mechanism="OAUTHBEARER",
            oauth_token_endpoint_url="https://idp.invalid/token",
            oauth_client_id="tagger",
            oauth_client_secret="s3cret",
            oauth_scope="kafka",
            oauth_extensions="logicalCluster=lkc-abc12,identityPoolId=pool-XyZ9",
        ),
    }


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        FLOORS,
        {"assignment_strategy": "range", "group_instance_id": "worker-0", "session_timeout_ms": 60_000},
    ],
    ids=["defaults", "floors", "eager-static"],
)
def test_librdkafka_accepts_the_clients_configuration(overrides: dict[str, Any]) -> None:
    settings = Settings(bootstrap_servers=NOWHERE, **overrides)
    Consumer(consumer_config(settings)).close()  # no broker needed: librdkafka validates on creation
    Producer(producer_config(settings, lambda _error, _message: None))


def test_librdkafka_accepts_every_security_setting(certs: Certs) -> None:
    for settings in secured(certs).values():
        Consumer(consumer_config(settings)).close()  # loads the CA, certificate and key
        Producer(producer_config(settings, lambda _error, _message: None))
        AdminClient(admin_config(settings))


def test_a_fetch_size_under_librdkafkas_message_size_is_refused_by_it() -> None:
    """Why ``fetch_max_kbytes`` has a floor of 1,024."""
    settings = Settings(bootstrap_servers=NOWHERE).model_copy(update={"fetch_max_kbytes": 512})
    with pytest.raises(KafkaException, match=r"fetch\.max\.bytes"):
        Consumer(consumer_config(settings))


def test_security_settings_in_librdkafkas_terms(certs: Certs) -> None:
    ways = secured(certs)
    mtls = librdkafka_common(ways["mtls"])
    assert mtls["ssl.ca.location"] == str(certs.ca)
    assert (mtls["ssl.certificate.location"], mtls["ssl.key.location"], mtls["ssl.key.password"]) == (
        str(certs.client_cert),
        str(certs.client_key_encrypted),
        KEY_PASSWORD,
    )
    assert mtls["ssl.endpoint.identification.algorithm"] == "https"
    scram = librdkafka_common(ways["scram"])
    login = ("security.protocol", "sasl.mechanism", "sasl.username", "sasl.password")
    assert [scram[key] for key in login] == ["SASL_SSL", "SCRAM-SHA-512", "tagger", "s3cret"]
    assert scram["ssl.endpoint.identification.algorithm"] == "none"
    assert "ssl.ca.location" not in librdkafka_common(ways["plain"])  # no TLS: no TLS settings
    oauth = librdkafka_common(ways["oauth"])
    assert {key: oauth[key] for key in oauth if key.startswith("sasl.")} == {
        "sasl.mechanism": "OAUTHBEARER",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.token.endpoint.url": "https://idp.invalid/token",
        "sasl.oauthbearer.client.id": "tagger",
        "sasl.oauthbearer.client.secret": "s3cret",
        "sasl.oauthbearer.scope": "kafka",
        "sasl.oauthbearer.extensions": "logicalCluster=lkc-abc12,identityPoolId=pool-XyZ9",
    }


def test_the_pass_through_reaches_the_clients_it_names() -> None:
    settings = Settings(
        bootstrap_servers=NOWHERE,
        kafka_extra={"client.rack": "use1-az1"},
        kafka_producer_extra={"compression.type": "zstd"},
        kafka_consumer_extra={"fetch.min.bytes": "1024"},
    )
    producer = producer_config(settings, lambda _error, _message: None)
    consumer = consumer_config(settings)
    admin = admin_config(settings)
    assert producer["client.rack"] == consumer["client.rack"] == admin["client.rack"] == "use1-az1"
    assert producer["compression.type"] == "zstd" and "compression.type" not in consumer
    assert consumer["fetch.min.bytes"] == "1024" and "fetch.min.bytes" not in producer
    assert "fetch.min.bytes" not in admin and "compression.type" not in admin
    assert consumer_common(settings)["fetch.min.bytes"] == "1024"


def test_the_hot_path_consumer_rebalances_incrementally_and_may_be_a_static_member() -> None:
    conf = consumer_config(Settings(bootstrap_servers=NOWHERE))
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"
    assert conf["max.poll.interval.ms"] == 300_000
    assert "group.instance.id" not in conf
    conf = consumer_config(Settings(bootstrap_servers=NOWHERE, group_instance_id="worker-0"))
    assert conf["group.instance.id"] == "worker-0"


# --- Faust's client: the same connection ---


def aiokafka_auth(settings: Settings) -> dict[str, Any]:
    """What Faust gives each of its aiokafka clients for these settings."""
    return dict(credentials_to_aiokafka_auth(make_faust_app(settings).conf.broker_credentials))


@pytest.mark.parametrize(
    "servers", ["k1:9092,kafka-2.kafka", "10.0.0.1:9092", "[::1]:9093", "[::ffff:10.0.0.1]", "[FE80::1]:9092"]
)
def test_faust_takes_every_broker_list_the_settings_take(servers: str) -> None:
    settings = Settings(bootstrap_servers=servers)
    assert len(server_list(make_faust_app(settings).conf.broker, 9092)) == len(settings.brokers())


def test_faust_gets_the_same_tls_as_librdkafka(certs: Certs) -> None:
    auth = aiokafka_auth(secured(certs)["mtls"])
    assert auth["security_protocol"] == "SSL"  # SSL alone used to leave Faust in plaintext
    context: ssl.SSLContext = auth["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [dict(entry[0] for entry in ca["subject"])["commonName"] for ca in context.get_ca_certs()] == [
        "stream-tagger test CA"
    ]  # only the configured CA, as librdkafka's ssl.ca.location


def test_without_a_ca_file_both_clients_trust_the_same_store_for_brokers(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The system's store as Python finds it: librdkafka alone would not read SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    settings = Settings(security_protocol="SSL")
    assert librdkafka_common(settings)["ssl.ca.location"] == str(certs.ca)
    context: ssl.SSLContext = aiokafka_auth(settings)["ssl_context"]
    assert "stream-tagger test CA" in [
        dict(entry[0] for entry in ca["subject"])["commonName"] for ca in context.get_ca_certs()
    ]


def test_faust_gets_the_same_sasl_login(certs: Certs) -> None:
    auth = aiokafka_auth(secured(certs)["scram"])
    assert (auth["security_protocol"], auth["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("tagger", "s3cret")
    assert not auth["ssl_context"].check_hostname  # ssl_check_hostname=False reaches it too
    auth = aiokafka_auth(secured(certs)["plain"])
    assert (auth["security_protocol"], auth["sasl_mechanism"], auth["ssl_context"]) == (
        "SASL_PLAINTEXT",
        "PLAIN",
        None,
    )


def test_faust_gets_an_oidc_token_provider(certs: Certs) -> None:
    credentials = faust_credentials(secured(certs)["oauth"])
    assert isinstance(credentials, faust.OAuthCredentials)
    auth = dict(credentials_to_aiokafka_auth(credentials))
    assert (auth["security_protocol"], auth["sasl_mechanism"]) == ("SASL_SSL", "OAUTHBEARER")
    provider = auth["sasl_oauth_token_provider"]
    assert isinstance(provider, OidcTokenProvider)
    # aiokafka sends these with the token, as librdkafka sends its sasl.oauthbearer.extensions.
    assert provider.extensions() == {"logicalCluster": "lkc-abc12", "identityPoolId": "pool-XyZ9"}


def test_faust_producers_partition_keys_as_kafkas_java_client_too() -> None:
    partitions = list(range(4))
    assert all(DefaultPartitioner()(key, partitions, partitions) == java_partition(key, 4) for key in KEYS)


class TokenEndpoint(BaseHTTPRequestHandler):
    """An OIDC token endpoint: a new token per request, valid ``lifetime`` seconds; 401 for others."""

    lifetime = 3600
    requests: ClassVar[list[tuple[str | None, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        type(self).requests.append((self.headers.get("Authorization"), body))
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"tagger:s3cret").decode():
            answer, status = {"error": "invalid_client"}, 401
        else:
            answer, status = {"access_token": f"token-{len(self.requests)}", "expires_in": self.lifetime}, 200
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def token_endpoint() -> Iterator[str]:
    TokenEndpoint.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/token"
    server.shutdown()


def oauth(url: str, secret: str = "s3cret") -> Settings:
    return Settings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        oauth_token_endpoint_url=url,
        oauth_client_id="tagger",
        oauth_client_secret=secret,
        oauth_scope="kafka",
    )


def test_the_token_provider_asks_as_librdkafka_does_and_keeps_the_token(token_endpoint: str) -> None:
    provider = OidcTokenProvider(oauth(token_endpoint))

    async def three_connections() -> list[str]:
        return list(await asyncio.gather(*(provider.token() for _ in range(3))))

    assert asyncio.run(three_connections()) == ["token-1"] * 3
    assert TokenEndpoint.requests == [
        ("Basic " + base64.b64encode(b"tagger:s3cret").decode(), "grant_type=client_credentials&scope=kafka")
    ]


def test_the_token_provider_asks_again_before_the_token_expires(
    token_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TokenEndpoint, "lifetime", 0)
    provider = OidcTokenProvider(oauth(token_endpoint))
    assert [asyncio.run(provider.token()) for _ in range(2)] == ["token-1", "token-2"]


def test_a_refused_token_request_is_one_line_naming_the_endpoint(token_endpoint: str) -> None:
    with pytest.raises(TokenError) as raised:
        asyncio.run(OidcTokenProvider(oauth(token_endpoint, secret="wrong")).token())
    assert str(raised.value) == (
        f"OIDC token endpoint {token_endpoint} answered 401 without an "
        'access_token: {"error": "invalid_client"}'
    )


# --- the partitioner ---


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` (the Java client's default partitioner), from its definition."""
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    whole = len(data) & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[whole:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h = ((h ^ tail[0]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h >= 1 << 31 else h  # Java's int


def java_partition(key: bytes, partitions: int) -> int:
    """``BuiltInPartitioner.partitionForKey``: toPositive(murmur2(key)) % partitions."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_murmur2_here_is_kafkas() -> None:
    """The values of Kafka's own UtilsTest.testMurmur2."""
    assert {
        key: murmur2(key.encode())
        for key in ("21", "foobar", "a-little-bit-long-string", "a-little-bit-longer-string", "abc")
    } == {
        "21": -973932308,
        "foobar": -790332482,
        "a-little-bit-long-string": -985981536,
        "a-little-bit-longer-string": -1486304829,
        "abc": 479470107,
    }


KEYS = [f"content-{i}".encode() for i in range(40)] + [b"21", b"foobar", b"abc"]


def partitions_chosen(conf: dict[str, Any]) -> dict[bytes, int]:
    """Where ``conf``'s producer puts each key, on librdkafka's in-process mock cluster (no broker)."""
    chosen: dict[bytes, int] = {}

    def delivered(error: KafkaError | None, message: Message) -> None:
        assert error is None, error
        chosen[message.key()] = message.partition()

    producer = Producer({**conf, "test.mock.num.brokers": 1, "delivery.report.only.error": False})
    for key in KEYS:
        producer.produce("keyed", b"value", key, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert len(producer.list_topics("keyed", timeout=10).topics["keyed"].partitions) == 4
    return chosen


def test_every_producer_puts_a_key_where_kafkas_java_client_would() -> None:
    settings = Settings(bootstrap_servers=NOWHERE)
    java = {key: java_partition(key, 4) for key in KEYS}
    hot_path = producer_config(settings, lambda _error, _message: None)
    assert partitions_chosen(hot_path) == java
    assert partitions_chosen(producer_common(settings)) == java
    tool = make_producer(settings)  # produce, demo: the conf is the producer's own; check it took it
    assert tool is not None and producer_common(settings)["partitioner"] == JAVA_PARTITIONER
    # librdkafka's own default puts some elsewhere: the setting is what makes them agree
    assert partitions_chosen({"bootstrap.servers": NOWHERE}) != java


# --- the token endpoint's TLS: both clients trust the same CAs ---


@pytest.fixture
def https_token_endpoint(certs: Certs) -> Iterator[str]:
    """The token endpoint over TLS, its certificate (localhost) signed by the test CA."""
    TokenEndpoint.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.broker_keystore)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://localhost:{server.server_port}/token"
    server.shutdown()


def librdkafka_asks_for_a_token(settings: Settings) -> bool:
    """Whether librdkafka's OIDC request reaches the endpoint: it asks as the client is made, no broker
    needed."""
    quiet = logging.getLogger("tests.librdkafka")
    quiet.propagate = False
    producer = Producer({**librdkafka_common(settings), "bootstrap.servers": "", "logger": quiet})
    deadline = time.monotonic() + 3
    while not TokenEndpoint.requests and time.monotonic() < deadline:
        producer.poll(0.1)
    return bool(TokenEndpoint.requests)


def oauth_over_tls(url: str, ca: Path | None) -> Settings:
    return Settings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        oauth_token_endpoint_url=url,
        oauth_client_id="tagger",
        oauth_client_secret="s3cret",
        oauth_ca_file=ca,
    )


def test_both_clients_trust_the_token_endpoints_private_ca(https_token_endpoint: str, certs: Certs) -> None:
    settings = oauth_over_tls(https_token_endpoint, certs.ca)
    assert librdkafka_common(settings)["https.ca.location"] == str(certs.ca)
    assert librdkafka_asks_for_a_token(settings)
    assert asyncio.run(OidcTokenProvider(settings).token()).startswith("token-")


def test_both_clients_refuse_a_token_endpoint_another_ca_signed(
    https_token_endpoint: str, certs: Certs
) -> None:
    settings = oauth_over_tls(https_token_endpoint, certs.untrusted_ca)
    assert not librdkafka_asks_for_a_token(settings)
    with pytest.raises(TokenError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(OidcTokenProvider(settings).token())


def test_without_a_ca_file_both_clients_trust_the_systems_store(
    https_token_endpoint: str, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The system's store as Python finds it, not where the wheel's librdkafka was built to look."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    settings = oauth_over_tls(https_token_endpoint, None)
    assert librdkafka_common(settings)["https.ca.location"] == str(certs.ca)
    assert librdkafka_asks_for_a_token(settings)
    assert asyncio.run(OidcTokenProvider(settings).token()).startswith("token-")


def test_a_token_endpoint_ca_file_is_for_oauthbearer_and_must_hold_a_certificate(certs: Certs) -> None:
    with pytest.raises(SettingsError, match="STREAM_TAGGER_OAUTH_CA_FILE is set but not used"):
        Settings(oauth_ca_file=certs.ca)
    with pytest.raises(SettingsError, match="STREAM_TAGGER_OAUTH_CA_FILE: no PEM certificate in"):
        oauth_over_tls("https://idp.invalid/token", certs.client_key)
