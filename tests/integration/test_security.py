"""Every client of the package connects to Apache Kafka over TLS, mutual TLS and SASL (SCRAM, PLAIN,
OAUTHBEARER by OIDC client credentials), on certificates the test makes; a broker that refuses a
client (wrong password, untrusted CA, no client certificate, another host's certificate) is one line
and a non-zero exit from every command, within seconds.

The broker is this module's own: the session's plaintext broker has no secured listener.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from stream_tagger.kafka.admin import broker_topics
from stream_tagger.kafka.config import faust_credentials
from stream_tagger.kafka.embedded_broker import free_port
from stream_tagger.kafka.local_cluster import KafkaNode, LocalKafka
from stream_tagger.processes import cli_command
from stream_tagger.settings import Settings
from tests.certs import KEY_PASSWORD, Certs, make_certs
from tests.conftest import MODELS, start_kafka
from tests.integration.helpers import WORKER_COMMAND, WorkerProcess, settings_env, valid_events

OAUTHBEARER_LOGIN = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
USER, PASSWORD = "tagger", "s3cret-password"
QUIET = logging.getLogger("tests.security.librdkafka")
CLIENT_ID, CLIENT_SECRET = "tagger-client", "client-s3cret"
# A refusal must be reported in seconds; these bound the commands' runs so that a hang fails the test.
TOOL_TIMEOUT_S = 30
WORKER_TIMEOUT_S = 90


class RecordingProxy:
    """A TCP proxy to ``target`` on a port of its own (``port``, bound at once) that keeps the bytes
    each client connection sends."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._target = target
        self._lock = threading.Lock()
        self._sent: list[bytearray] = []  # per connection, in the order they came
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def connections(self) -> list[bytes]:
        """What each connection sent so far."""
        with self._lock:
            return [bytes(sent) for sent in self._sent]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone would not
        self._server.close()
        self._accepting.join(5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # shut down
                return
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:  # the broker is not there: the client sees its connection closed
                client.close()
                continue
            upstream.settimeout(None)
            sent = bytearray()
            with self._lock:
                self._sent.append(sent)
            threading.Thread(target=self._pipe, args=(client, upstream, sent), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, None), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, record: bytearray | None) -> None:
        try:
            while data := source.recv(65536):
                if record is not None:
                    with self._lock:
                        record += data
                sink.sendall(data)
        except OSError:
            pass
        finally:  # one side closed: so does the other, and the other direction's pipe ends
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()


class SecureKafka(LocalKafka):
    """One Kafka node with four listeners beside the PLAINTEXT one the tests set up through:
    SASL_SSL (SCRAM-SHA-256/512, PLAIN, and OAUTHBEARER with Kafka's unsecured-JWT validator),
    MTLS (TLS, a client certificate required), OTHER_HOST (TLS, a certificate for another host) and
    SASL_PLAIN (OAUTHBEARER without TLS), which clients reach through ``proxy``, a ``RecordingProxy``
    whose port the broker advertises for it: there the SASL exchange can be read."""

    def __init__(self, directory: Path, certs: Certs) -> None:
        super().__init__(directory)
        self.certs = certs
        self.ports = {listener: free_port() for listener in ("SASL_SSL", "MTLS", "OTHER_HOST", "SASL_PLAIN")}
        self.proxy = RecordingProxy(("127.0.0.1", self.ports["SASL_PLAIN"]))

    def address(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    def server_properties(self, node: KafkaNode) -> dict[str, object]:
        properties = super().server_properties(node)
        advertised = {**self.ports, "SASL_PLAIN": self.proxy.port}
        listeners, reached = (
            ",".join(f"{listener}://{node.host}:{port}" for listener, port in ports.items())
            for ports in (self.ports, advertised)
        )
        properties["listeners"] = f"{properties['listeners']},{listeners}"
        properties["advertised.listeners"] = f"{properties['advertised.listeners']},{reached}"
        properties["listener.security.protocol.map"] = (
            f"{properties['listener.security.protocol.map']},SASL_SSL:SASL_SSL,MTLS:SSL,OTHER_HOST:SSL,"
            "SASL_PLAIN:SASL_PLAINTEXT"
        )
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        properties.update(
            {
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": self.certs.broker_keystore,
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": self.certs.ca,
                "listener.name.mtls.ssl.client.auth": "required",
                "listener.name.other_host.ssl.keystore.type": "PEM",
                "listener.name.other_host.ssl.keystore.location": self.certs.other_host_keystore,
                "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN,OAUTHBEARER",
                "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
                "listener.name.sasl_ssl.plain.sasl.jaas.config": (
                    "org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f'user_{USER}="{PASSWORD}";'
                ),
                "listener.name.sasl_ssl.oauthbearer.sasl.jaas.config": OAUTHBEARER_LOGIN,
                "listener.name.sasl_plain.sasl.enabled.mechanisms": "OAUTHBEARER",
                "listener.name.sasl_plain.oauthbearer.sasl.jaas.config": OAUTHBEARER_LOGIN,
            }
        )
        return properties


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class TokenEndpoint(BaseHTTPRequestHandler):
    """An OIDC provider's token endpoint for the client-credentials grant. Its tokens are unsigned
    JWTs, which is what the broker's default OAUTHBEARER validator takes."""

    clients: ClassVar[list[str]] = []  # the User-Agent of each client that got a token

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            answer, status = {"error": "invalid_client"}, 401
        else:
            type(self).clients.append(self.headers.get("User-Agent", ""))
            now = int(time.time())
            token = f"{_b64({'alg': 'none'})}.{_b64({'sub': USER, 'iat': now, 'exp': now + 3600})}."
            answer, status = {"access_token": token, "token_type": "bearer", "expires_in": 3600}, 200
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def token_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/token"
    server.shutdown()


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[SecureKafka]:
    secure = start_kafka(SecureKafka(tmp_path_factory.mktemp("secure-kafka"), certs))
    try:
        admin = AdminClient({"bootstrap.servers": secure.bootstrap_servers, "logger": QUIET})
        for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
            # One request per mechanism: Kafka refuses a user twice in one.
            credential = ScramCredentialInfo(mechanism, 4096)
            upsert = UserScramCredentialUpsertion(USER, credential, PASSWORD.encode())
            admin.alter_user_scram_credentials([upsert])[USER].result(30)
        yield secure
    finally:
        secure.stop()
        secure.proxy.close()


@pytest.fixture
def topics() -> dict[str, Any]:
    """Topics and group unique to the test."""
    run = uuid.uuid4().hex[:8]
    return {
        "consumer_group": f"test-{run}",
        "topic_raw": f"raw-{run}",
        "topic_tagged": f"tagged-{run}",
        "topic_review": f"review-{run}",
        "topic_dead_letter": f"dlq-{run}",
        "topic_feedback": f"feedback-{run}",
        "topic_shadow_disagreements": f"shadow-{run}",
        "session_timeout_ms": 6_000,
        "heartbeat_interval_ms": 500,
        "model_dir": MODELS / "current",
        "replication_factor": 1,
        "min_insync_replicas": 1,
    }  # one broker


def connect(
    kafka: SecureKafka, certs: Certs, way: str, token_endpoint: str = "", **overrides: Any
) -> dict[str, Any]:
    """The settings of one way of connecting to ``kafka``."""
    sasl = {
        "bootstrap_servers": kafka.address("SASL_SSL"),
        "security_protocol": "SASL_SSL",
        "ssl_ca_file": certs.ca,
    }
    ways: dict[str, dict[str, Any]] = {
        "scram-sha-512": {
            **sasl,
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": USER,
            "sasl_password": PASSWORD,
        },
        "scram-sha-256": {
            **sasl,
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": USER,
            "sasl_password": PASSWORD,
        },
        "plain": {**sasl, "sasl_mechanism": "PLAIN", "sasl_username": USER, "sasl_password": PASSWORD},
        "oauthbearer": {
            **sasl,
            "sasl_mechanism": "OAUTHBEARER",
            "oauth_token_endpoint_url": token_endpoint,
            "oauth_client_id": CLIENT_ID,
            "oauth_client_secret": CLIENT_SECRET,
        },
        "mtls": {
            "bootstrap_servers": kafka.address("MTLS"),
            "security_protocol": "SSL",
            "ssl_ca_file": certs.ca,
            "ssl_cert_file": certs.client_cert,
            "ssl_key_file": certs.client_key,
        },
    }
    return {**ways[way], **overrides}


def run(*args: str, env: dict[str, str], timeout: float = TOOL_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command(*args), env=env, capture_output=True, text=True, timeout=timeout)


def write_events(path: Path, n: int, prefix: str) -> list[str]:
    """``n`` raw events as JSON lines; their ids."""
    events = valid_events(n, prefix)
    path.write_bytes(b"".join(value + b"\n" for _key, value in events))
    return [key.decode() for key, _value in events]


def tailed_ids(result: subprocess.CompletedProcess[str]) -> set[str]:
    assert result.returncode == 0, result.stderr
    return {json.loads(line)["id"] for line in result.stdout.splitlines()}


def wait_group_stable(kafka: SecureKafka, group: str, timeout: float = 60.0) -> None:
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers, "logger": QUIET})
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        description = admin.describe_consumer_groups([group])[group].result(10)
        state = description.state.name
        if state == "STABLE" and description.members:
            return
        time.sleep(0.5)
    raise AssertionError(f"group {group} not stable with members after {timeout:.0f}s ({state})")


@pytest.mark.timeout(240)
def test_the_worker_tags_events_over_sasl_ssl_with_scram(
    kafka: SecureKafka, certs: Certs, topics: dict[str, Any], tmp_path: Path
) -> None:
    # The feedback loop in the worker's process: Faust's client has a group to join, over SASL_SSL too.
    settings = Settings(**connect(kafka, certs, "scram-sha-512"), **topics, feedback_in_worker=True)
    env = settings_env(settings)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready(timeout=120)
        ids = write_events(tmp_path / "posts.jsonl", 50, "sasl")
        produced = run("produce", "--file", str(tmp_path / "posts.jsonl"), env=env)
        assert produced.returncode == 0, produced.stderr
        assert "delivered 50, failed 0" in produced.stderr
        tail = ["tail", "--topic", "tagged", "--from-beginning", "--json", "--max", "50", "--timeout", "60"]
        tailed = run(*tail, env=env, timeout=90)
        assert tailed_ids(tailed) == set(ids)
        wait_group_stable(kafka, f"{settings.consumer_group}-app")  # Faust's aiokafka client is in
        assert worker.terminate() == 0


def test_produce_and_tail_over_mutual_tls_with_a_key_password_from_a_file(
    kafka: SecureKafka, certs: Certs, topics: dict[str, Any], tmp_path: Path
) -> None:
    password = tmp_path / "key-password"
    password.write_text(KEY_PASSWORD + "\n")
    settings = Settings(
        **connect(
            kafka, certs, "mtls", ssl_key_file=certs.client_key_encrypted, ssl_key_password_file=password
        ),
        **topics,
    )
    env = settings_env(settings)
    del env["STREAM_TAGGER_SSL_KEY_PASSWORD"]  # from the file alone, as a mounted secret gives it
    ids = write_events(tmp_path / "posts.jsonl", 20, "mtls")
    produced = run("produce", "--file", str(tmp_path / "posts.jsonl"), env=env)
    assert produced.returncode == 0, produced.stderr
    tailed = run(
        "tail", "--topic", "raw", "--from-beginning", "--json", "--max", "20", "--timeout", "30", env=env
    )
    assert tailed_ids(tailed) == set(ids)


async def _faust_client_sends(settings: Settings) -> None:
    """One message sent by an aiokafka producer configured as Faust configures its clients."""
    auth = credentials_to_aiokafka_auth(faust_credentials(settings))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, **auth)
    await asyncio.wait_for(producer.start(), 30)
    try:
        await asyncio.wait_for(producer.send_and_wait(settings.topic_raw, b"{}", key=b"k"), 30)
    finally:
        await producer.stop()


@pytest.mark.parametrize("way", ["scram-sha-256", "plain", "oauthbearer", "mtls"])
def test_both_clients_log_in_every_way(
    way: str, kafka: SecureKafka, certs: Certs, token_endpoint: str, topics: dict[str, Any]
) -> None:
    settings = Settings(**connect(kafka, certs, way, token_endpoint), **topics)
    TokenEndpoint.clients.clear()
    assert settings.topic_raw not in broker_topics(settings, timeout=20)  # librdkafka
    asyncio.run(_faust_client_sends(settings))  # aiokafka, as Faust makes it
    assert settings.topic_raw in broker_topics(settings, timeout=20)
    if way == "oauthbearer":  # each got its token from the provider (librdkafka's sends no User-Agent)
        by_aiohttp = ["aiohttp" in agent for agent in TokenEndpoint.clients]
        assert True in by_aiohttp and False in by_aiohttp, TokenEndpoint.clients


def test_both_clients_send_the_sasl_extensions_with_their_token(
    kafka: SecureKafka, token_endpoint: str, topics: dict[str, Any]
) -> None:
    """What Confluent Cloud reads beside the token to place a client (its cluster, its identity pool),
    seen on the wire from librdkafka and from Faust's client alike."""
    settings = Settings(
        bootstrap_servers=f"127.0.0.1:{kafka.proxy.port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        oauth_token_endpoint_url=token_endpoint,
        oauth_client_id=CLIENT_ID,
        oauth_client_secret=CLIENT_SECRET,
        oauth_extensions="logicalCluster=lkc-test1,identityPoolId=pool-test2",
        **topics,
    )
    start = len(kafka.proxy.connections())
    broker_topics(settings, timeout=20)  # librdkafka logs in, or this raises
    asyncio.run(_faust_client_sends(settings))  # aiokafka, as Faust makes it
    logins = [sent for sent in kafka.proxy.connections()[start:] if b"auth=Bearer " in sent]
    # Each request names its client: "rdkafka", or "aiokafka-<version>".
    by_client = {name: [login for login in logins if name in login] for name in (b"rdkafka", b"aiokafka")}
    assert by_client[b"rdkafka"] and by_client[b"aiokafka"], logins
    assert len(logins) == len(by_client[b"rdkafka"]) + len(by_client[b"aiokafka"]), logins
    extensions = (b"\x01logicalCluster=lkc-test1\x01", b"\x01identityPoolId=pool-test2\x01")
    for login in logins:
        assert all(extension in login for extension in extensions), login[:300]


def test_hostname_verification_is_on_by_default_and_can_be_turned_off(
    kafka: SecureKafka, certs: Certs, topics: dict[str, Any]
) -> None:
    other_host = {
        "bootstrap_servers": kafka.address("OTHER_HOST"),
        "security_protocol": "SSL",
        "ssl_ca_file": certs.ca,
    }
    env = settings_env(Settings(**other_host, **topics))
    refused = run("tail", "--max", "1", env=env)
    assert refused.returncode == 1
    assert "refused this client: SSL handshake failed" in refused.stderr
    unchecked = Settings(**other_host, **topics, ssl_check_hostname=False)
    broker_topics(unchecked, timeout=20)
    asyncio.run(_faust_client_sends(unchecked))


REFUSALS = {
    "wrong-password": (
        {"sasl_password": "wrong-password"},
        "SASL authentication error: Authentication failed during authentication due to "
        "invalid credentials with SASL mechanism SCRAM-SHA-512 (check "
        "STREAM_TAGGER_SASL_USERNAME and STREAM_TAGGER_SASL_PASSWORD)",
    ),
    # librdkafka words the first failed handshake one of two ways
    "untrusted-ca": ({"ssl_ca_file": "UNTRUSTED"}, "error:0A000086:SSL routines::certificate verify failed"),
}


def refused_settings(kafka: SecureKafka, certs: Certs, topics: dict[str, Any], refusal: str) -> Settings:
    overrides = dict(REFUSALS[refusal][0])
    if overrides.get("ssl_ca_file") == "UNTRUSTED":
        overrides["ssl_ca_file"] = certs.untrusted_ca
    return Settings(**connect(kafka, certs, "scram-sha-512", **overrides), **topics)


def assert_refused(stderr: str, kafka: SecureKafka, refusal: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors and len(errors) == 1, stderr
    where = kafka.address("SASL_SSL")
    assert errors[0].startswith(f"error: the Kafka broker at {where} refused this client: ")
    assert REFUSALS[refusal][1] in errors[0], stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("refusal", REFUSALS)
@pytest.mark.parametrize(
    "command",
    [["produce", "--file", "EVENTS"], ["tail", "--max", "1"], ["export-feedback", "--out", "OUT"]],
    ids=lambda c: c[0],
)
def test_a_refused_tool_says_why_in_one_line(
    command: list[str], refusal: str, kafka: SecureKafka, certs: Certs, topics: dict[str, Any], tmp_path: Path
) -> None:
    write_events(tmp_path / "posts.jsonl", 1, "refused")
    paths = {"EVENTS": str(tmp_path / "posts.jsonl"), "OUT": str(tmp_path / "out.csv")}
    args = [paths.get(arg, arg) for arg in command]
    started = time.monotonic()
    result = run(*args, env=settings_env(refused_settings(kafka, certs, topics, refusal)))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # nothing but the error
    assert_refused(result.stderr, kafka, refusal)
    assert time.monotonic() - started < 15


@pytest.mark.timeout(300)
@pytest.mark.parametrize("refusal", REFUSALS)
@pytest.mark.parametrize("command", ["worker", "feedback-worker"])
def test_a_refused_worker_says_why_in_one_line_and_exits(
    command: str, refusal: str, kafka: SecureKafka, certs: Certs, topics: dict[str, Any]
) -> None:
    settings = refused_settings(kafka, certs, topics, refusal)
    env = settings_env(settings.model_copy(update={"web_port": free_port()}))
    result = subprocess.run(
        [*WORKER_COMMAND[:-1], command], env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S
    )
    assert result.returncode == 1, result.stderr
    assert_refused(result.stderr, kafka, refusal)  # the log above it is the worker's, as ever


def test_a_client_without_its_certificate_is_refused_in_one_line(
    kafka: SecureKafka, certs: Certs, topics: dict[str, Any]
) -> None:
    settings = Settings(
        bootstrap_servers=kafka.address("MTLS"), security_protocol="SSL", ssl_ca_file=certs.ca, **topics
    )
    result = run("tail", "--max", "1", env=settings_env(settings))
    assert result.returncode == 1
    where = kafka.address("MTLS")
    assert result.stderr.startswith(f"error: the Kafka broker at {where} refused this client: ")
    assert "alert bad certificate" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_broker_really_requires_what_the_tests_rely_on(
    kafka: SecureKafka, certs: Certs, topics: dict[str, Any]
) -> None:
    """Plaintext to the TLS listener gets no answer: the passing tests above did use TLS."""
    plaintext = Settings(bootstrap_servers=kafka.address("SASL_SSL"), **topics)
    with pytest.raises(KafkaException):
        broker_topics(plaintext, timeout=3)
