"""The one settings object: every knob comes from ``STREAM_TAGGER_*`` environment variables.

Nothing else in the package reads ``os.environ``; a command or a test builds ``Settings(...)`` with
overrides and hands it down, so a run is described completely by one object that can be logged.

Settings are strict: a ``STREAM_TAGGER_*`` variable that names no setting, a value of the wrong type
or out of range, or settings that contradict each other raise ``SettingsError``, one line naming each
variable and what is wrong, so that a typo fails at start instead of leaving a default in force.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import logging
import os
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

from confluent_kafka import Consumer, KafkaException, Producer
from pydantic import (
    Field,
    FilePath,
    HttpUrl,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: The only tags the product may ever show to users.
APPROVED_TAGS: tuple[str, ...] = ("computer-vision", "mlops", "natural-language-processing", "other")

ENV_PREFIX = "STREAM_TAGGER_"
#: ``STREAM_TAGGER_*`` variables that are not settings and that ``Settings`` therefore lets pass: the
#: test suite's address of an existing Kafka cluster (tests/conftest.py).
NOT_SETTINGS = frozenset({"STREAM_TAGGER_TEST_BOOTSTRAP"})

#: Settings that hold a secret; each can also be read from the file that ``<name>_file`` names.
SECRETS = ("sasl_password", "ssl_key_password", "oauth_client_secret")
MASK = "**********"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
KafkaProperties = Annotated[dict[str, str], NoDecode]

# librdkafka properties the pass-through refuses: a setting owns them (and also gives them to Faust's
# client, or checks them against others), or the delivery guarantee depends on their value.
_GUARANTEE = "the delivery guarantee (STREAM_TAGGER_PROCESSING_GUARANTEE)"
_OWNED_PROPERTIES = {
    "bootstrap.servers": "STREAM_TAGGER_BOOTSTRAP_SERVERS",
    "metadata.broker.list": "STREAM_TAGGER_BOOTSTRAP_SERVERS",
    "security.protocol": "STREAM_TAGGER_SECURITY_PROTOCOL",
    "ssl.ca.location": "STREAM_TAGGER_SSL_CA_FILE",
    "ssl.certificate.location": "STREAM_TAGGER_SSL_CERT_FILE",
    "ssl.key.location": "STREAM_TAGGER_SSL_KEY_FILE",
    "ssl.endpoint.identification.algorithm": "STREAM_TAGGER_SSL_CHECK_HOSTNAME",
    "sasl.mechanism": "STREAM_TAGGER_SASL_MECHANISM",
    "sasl.mechanisms": "STREAM_TAGGER_SASL_MECHANISM",
    "sasl.username": "STREAM_TAGGER_SASL_USERNAME",
    "sasl.password": "STREAM_TAGGER_SASL_PASSWORD",
    "ssl.key.password": "STREAM_TAGGER_SSL_KEY_PASSWORD",
    "sasl.oauthbearer.client.secret": "STREAM_TAGGER_OAUTH_CLIENT_SECRET",
    "sasl.oauthbearer.method": "STREAM_TAGGER_SASL_MECHANISM=OAUTHBEARER",
    "sasl.oauthbearer.token.endpoint.url": "STREAM_TAGGER_OAUTH_TOKEN_ENDPOINT_URL",
    "sasl.oauthbearer.client.id": "STREAM_TAGGER_OAUTH_CLIENT_ID",
    "sasl.oauthbearer.scope": "STREAM_TAGGER_OAUTH_SCOPE",
    "sasl.oauthbearer.extensions": "STREAM_TAGGER_OAUTH_EXTENSIONS",
    "group.id": "STREAM_TAGGER_CONSUMER_GROUP",
    "group.instance.id": "STREAM_TAGGER_GROUP_INSTANCE_ID",
    "partition.assignment.strategy": "STREAM_TAGGER_ASSIGNMENT_STRATEGY",
    "session.timeout.ms": "STREAM_TAGGER_SESSION_TIMEOUT_MS",
    "heartbeat.interval.ms": "STREAM_TAGGER_HEARTBEAT_INTERVAL_MS",
    "max.poll.interval.ms": "STREAM_TAGGER_MAX_POLL_INTERVAL_MS",
    "message.timeout.ms": "STREAM_TAGGER_DELIVERY_TIMEOUT_MS",
    "delivery.timeout.ms": "STREAM_TAGGER_DELIVERY_TIMEOUT_MS",
    "linger.ms": "STREAM_TAGGER_LINGER_MS",
    "queue.buffering.max.ms": "STREAM_TAGGER_LINGER_MS",
    "transactional.id": "STREAM_TAGGER_TRANSACTIONAL_ID",
    "transaction.timeout.ms": "STREAM_TAGGER_TRANSACTION_TIMEOUT_MS",
    "fetch.wait.max.ms": "STREAM_TAGGER_FETCH_WAIT_MAX_MS",
    "queued.max.messages.kbytes": "STREAM_TAGGER_CONSUMER_PREFETCH_KBYTES",
    "queued.min.messages": "STREAM_TAGGER_CONSUMER_PREFETCH_MESSAGES",
    "fetch.queue.backoff.ms": "STREAM_TAGGER_FETCH_QUEUE_BACKOFF_MS",
    "fetch.max.bytes": "STREAM_TAGGER_FETCH_MAX_KBYTES",
    "max.partition.fetch.bytes": "STREAM_TAGGER_FETCH_PARTITION_MAX_KBYTES",
    "statistics.interval.ms": "STREAM_TAGGER_LAG_INTERVAL_MS",
    "enable.auto.commit": _GUARANTEE,
    "enable.auto.offset.store": _GUARANTEE,
    "auto.commit.interval.ms": _GUARANTEE,
    "isolation.level": _GUARANTEE,
    "enable.idempotence": _GUARANTEE,
    "acks": _GUARANTEE,
    "request.required.acks": _GUARANTEE,
    # consumer_config sets it over the pass-through's: refused rather than ignored.
    "auto.offset.reset": (
        "the worker, which starts a new group at the earliest offset (and a partition whose committed "
        "offset is gone) so that no event is skipped"
    ),
    # Outputs are keyed by content id and joined with other producers' topics by partition.
    "partitioner": "Kafka's Java default partitioner (murmur2), which every producer of the package uses",
}
# Connection and security properties the pass-through refuses by prefix: librdkafka's clients would
# apply them and Faust's (aiokafka) would not, so the two halves of one process would connect or
# authenticate differently (enable.ssl.certificate.verification=false, say, would turn TLS
# verification off for the hot path only). The settings named give both halves the same.
_CONNECTION_PREFIXES = {
    "ssl.": "STREAM_TAGGER_SECURITY_PROTOCOL and STREAM_TAGGER_SSL_*",
    "ssl_": "STREAM_TAGGER_SECURITY_PROTOCOL and STREAM_TAGGER_SSL_*",
    "enable.ssl.": "STREAM_TAGGER_SECURITY_PROTOCOL and STREAM_TAGGER_SSL_*",
    "https.": "STREAM_TAGGER_SECURITY_PROTOCOL and STREAM_TAGGER_SSL_*",
    "sasl.": "STREAM_TAGGER_SASL_* and STREAM_TAGGER_OAUTH_*",
    "enable.sasl.": "STREAM_TAGGER_SASL_* and STREAM_TAGGER_OAUTH_*",
    "bootstrap.": "STREAM_TAGGER_BOOTSTRAP_SERVERS",
}
# A SASL extension (RFC 7628): a key of letters, a value of printable ASCII. Here a value also has no
# ',' (it separates pairs) nor '\\' (librdkafka's escape), nor a space at its ends (librdkafka trims
# them, aiokafka would not), so that both clients send the same.
_EXTENSION_KEY = re.compile(r"[A-Za-z]+")
_INNER, _EDGE = r"\x20-\x2b\x2d-\x5b\x5d-\x7e", r"\x21-\x2b\x2d-\x5b\x5d-\x7e"
_EXTENSION_VALUE = re.compile(f"[{_EDGE}](?:[{_INNER}]*[{_EDGE}])?")
MIN_PART_SIZE = 128  # smallest partial_batch_part_size but 0
_MIN_MESSAGE_MAX_BYTES = 1_000_000  # librdkafka's default, what decode.DEAD_LETTER_MAX_BYTES fits under
_MAX_MESSAGE_MAX_BYTES = 1_000_000_000  # librdkafka's largest
_DECIMAL = re.compile(r"[1-9][0-9]*")  # no sign, space, leading 0 (octal to strtol) or non-ASCII digit
# confluent-kafka's own properties, not librdkafka's: callbacks and delivery reports the package wires.
_PYTHON_CLIENT_PROPERTIES = frozenset(
    {
        "delivery.report.only.error",
        "error_cb",
        "stats_cb",
        "throttle_cb",
        "oauth_cb",
        "on_delivery",
        "on_commit",
        "logger",
    }
)
# A property whose name says it holds a secret: refused by the pass-through (the environment is no
# place for it) and masked wherever settings are printed.
_SECRET_MARKERS = ("password", "passphrase", "secret", "token", "credential", "key", ".pem")
# Also credentials in a token URL's query: OAuth's client_assertion, and request signatures.
_URL_SECRET_MARKERS = ("assertion", "sig", "signature")
#: The pass-through settings: their values are never shown in an error, only their property names.
EXTRAS = ("kafka_extra", "kafka_producer_extra", "kafka_consumer_extra")
# Nor is a token endpoint URL's: one that is refused may hold a password (user:password@, ?secret=).
_VALUE_NOT_SHOWN = frozenset({*SECRETS, *EXTRAS, "oauth_token_endpoint_url"})
#: The settings that name a topic, one per role.
TOPIC_ROLES = (
    "topic_raw",
    "topic_tagged",
    "topic_review",
    "topic_dead_letter",
    "topic_feedback",
    "topic_shadow_disagreements",
)
# The names Kafka accepts (it refuses "." and ".." too).
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
DEFAULT_BROKER_PORT = 9092
# A broker's host name or IPv4 address, or an IPv6 address in brackets (checked as one: Faust's URL
# parser, yarl, refuses anything else between brackets); a port of ASCII digits.
_HOST = re.compile(r"[A-Za-z0-9._-]+|\[(?P<ipv6>[0-9A-Fa-f:.]+)\]")
_PORT = re.compile(r"[0-9]+")
# librdkafka quotes the value it refuses ('Invalid value "x" for configuration property "y"'), or
# shows it after "value" or "failed:" (a range, a plugin path).
_SHOWS_VALUE = re.compile(r"[Ii]nvalid value|value \S+ is outside|failed: ")

# librdkafka checks the pass-through's names and values when it makes a client; its warnings (a
# consumer property given to a producer, say) are not errors and are not shown here.
_QUIET = logging.getLogger("stream_tagger.settings.librdkafka_check")
_QUIET.propagate = False
_QUIET.addHandler(logging.NullHandler())


def _extension_pairs(value: str) -> list[tuple[str, str, str]]:
    """``key=value,...`` split as librdkafka splits ``sasl.oauthbearer.extensions``: at ',', then at each
    pair's first '=' (key, '=' or '' when there is none, value)."""
    return [pair.partition("=") for pair in value.split(",")]


def _is_host(text: str) -> bool:
    match = _HOST.fullmatch(text)
    if match is None:
        return False
    if match["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(match["ipv6"])
        except ValueError:
            return False
    return True


def _host_and_port(entry: str) -> str:
    """A broker's ``host:port``; a host alone gets Kafka's port 9092, as librdkafka and Faust give it."""
    if _is_host(entry):
        return f"{entry}:{DEFAULT_BROKER_PORT}"
    host, _, port = entry.rpartition(":")
    if not _is_host(host) or not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
        raise ValueError(f"{entry} is not host or host:port; give such entries, comma-separated")
    return entry


class SettingsError(ValueError):
    """Settings that cannot be used. ``problems`` holds (field, name, what is wrong) per problem, the
    name being the ``STREAM_TAGGER_*`` variable or the keyword argument that gave the value (with the
    value unless it is a secret); a check across settings has neither field nor name, its text names
    the variables."""

    def __init__(self, problems: list[tuple[str | None, str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{name}: {what}" if name else what for _field, name, what in problems))

    def renamed(self, names: dict[str, str]) -> SettingsError:
        """The same problems, the keyword arguments in ``names`` called by those names (a command's
        flags)."""
        problems = []
        for field, name, what in self.problems:
            if field is not None and field in names and name.startswith(field):
                name = names[field] + name.removeprefix(field)
            problems.append((field, name, what))
        return SettingsError(problems)


def _ca_context(field: str, ca_file: Path | None) -> ssl.SSLContext:
    """A TLS context trusting ``ca_file`` (the system's store without one), as a client will build it:
    a file with no PEM certificate fails at start, naming its setting."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"{env_name(field)}: no PEM certificate in {ca_file} ({exc})") from None


def looks_secret(key: str) -> bool:
    """Whether a property's name says that its value is a secret."""
    return any(marker in key.lower() for marker in _SECRET_MARKERS)


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def key_password(settings: Settings) -> Callable[[], str]:
    """``ssl_key_password`` as Python's ``load_cert_chain`` takes it: a callable, since with None
    OpenSSL would prompt for the password of an encrypted key on the terminal."""
    password = settings.ssl_key_password.get_secret_value() if settings.ssl_key_password else ""
    return lambda: password


# Room, besides the wait for acks, for the work between two polls of the hot path: scoring a batch
# (milliseconds) and a rebalance callback's commit.
_POLL_MARGIN_MS = 10_000


def _unknown_variables(cls: type[BaseSettings]) -> list[tuple[str | None, str, str]]:
    """A problem for each ``STREAM_TAGGER_*`` variable that names no setting (pydantic-settings
    ignores them), with the setting it was probably meant to be."""
    known = {env_name(name) for name in cls.model_fields}
    problems: list[tuple[str | None, str, str]] = []
    for variable in sorted(os.environ):
        upper = variable.upper()  # pydantic-settings matches names case-insensitively
        if not upper.startswith(ENV_PREFIX) or upper in known or upper in NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append((None, variable, f"not a setting{hint}; see `stream-tagger config` for every one"))
    return problems


def _problems(exc: ValidationError, given: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    """One (field, name, what is wrong) per error, naming the variable or argument the value came from."""
    problems: list[tuple[str | None, str, str]] = []
    for error in exc.errors(include_url=False):
        what = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a check across settings: its message names the variables
            problems.append((None, "", what))
            continue
        field = str(error["loc"][0])
        name = field if field in given else env_name(field)
        if field in EXTRAS and len(error["loc"]) > 1:  # one property's value: name the property
            what = f"{error['loc'][1]}: {what}"
        value = error.get("input")
        if (
            field not in _VALUE_NOT_SHOWN
            and len(error["loc"]) == 1
            and isinstance(value, str | int | float | Path)
        ):
            shown = str(value) if isinstance(value, Path) else value
            if isinstance(shown, str) and len(shown) > 200:  # one line, not a JSON document
                shown = shown[:197] + "..."
            name = f"{name}={shown!r}"
        problems.append((field, name, what))
    return problems


def _offline(properties: dict[str, Any]) -> dict[str, Any]:
    """A client's configuration without what would make it connect: the brokers' addresses and the
    connection and security properties (OIDC fetches a token as the client is made)."""
    return {
        key: value
        for key, value in properties.items()
        if key not in ("bootstrap.servers", "security.protocol")
        and not key.startswith(tuple(_CONNECTION_PREFIXES))
    }


class Settings(BaseSettings):
    """Runtime configuration of the worker and the command line tools."""

    model_config = SettingsConfigDict(env_prefix="STREAM_TAGGER_", extra="ignore")

    # --- Kafka: where the brokers are and how a client proves who it is ---
    # Every client of the process gets the same connection: librdkafka's (hot path, topic admin,
    # produce, tail, demo, export-feedback) and Faust's aiokafka client (its own group, the feedback
    # worker); stream_tagger/kafka/config.py is the one place that turns these into each one's config.
    # host:port entries, comma-separated; parsed here once so that both libraries get the same list.
    bootstrap_servers: str = "127.0.0.1:19092"
    # PLAINTEXT, SSL (TLS; with ssl_cert_file and ssl_key_file, mutual TLS), SASL_PLAINTEXT or SASL_SSL.
    security_protocol: SecurityProtocol = "PLAINTEXT"
    # TLS: PEM bundle of the CA(s) that signed the brokers' certificates; None trusts the system's store
    # (as Python finds it, for both libraries).
    ssl_ca_file: FilePath | None = None
    # Mutual TLS: this client's certificate (PEM, intermediates after it) and private key (PEM), both
    # or neither; ssl_key_password if the key is encrypted.
    ssl_cert_file: FilePath | None = None
    ssl_key_file: FilePath | None = None
    ssl_key_password: SecretStr | None = None
    # TLS: the broker's certificate must name the host it was reached at (librdkafka's
    # ssl.endpoint.identification.algorithm=https, Python's check_hostname). Off only for brokers whose
    # certificates do not name their advertised addresses: the chain is still checked against the CA.
    ssl_check_hostname: bool = True
    # SASL_PLAINTEXT/SASL_SSL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 log in with sasl_username and
    # sasl_password; OAUTHBEARER with the oauth_* client credentials.
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # OAUTHBEARER through OIDC client credentials: a client asks the token endpoint for a token
    # (grant_type=client_credentials, HTTP Basic with client id and secret, the scope if set) and asks
    # again before it expires. librdkafka's sasl.oauthbearer.method=oidc; the same request for Faust's.
    oauth_token_endpoint_url: HttpUrl | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    oauth_scope: str | None = None
    # SASL extensions sent with the token, key=value pairs, comma-separated: what a cluster needs beside
    # the token to place the client, e.g. Confluent Cloud's "logicalCluster=lkc-abc12,identityPoolId=
    # pool-XyZ9". librdkafka's sasl.oauthbearer.extensions; Faust's client sends the same (RFC 7628:
    # keys are letters, "auth" is the token's own; values printable ASCII).
    oauth_extensions: str | None = None
    # PEM bundle of the CA(s) that signed the token endpoint's certificate (a private CA); None trusts
    # the system's store. librdkafka's https.ca.location and Faust's token provider get the same.
    oauth_ca_file: FilePath | None = None
    # Mounted secrets: each secret above can be read from a file instead (a Kubernetes or Docker secret),
    # STREAM_TAGGER_<SECRET>_FILE naming it; its content, less a trailing newline, is the value. Read once
    # at start. Setting both the secret and its file is refused unless they agree.
    sasl_password_file: FilePath | None = None
    ssl_key_password_file: FilePath | None = None
    oauth_client_secret_file: FilePath | None = None
    # Pass-through of other librdkafka properties, as a JSON object, e.g.
    # STREAM_TAGGER_KAFKA_EXTRA='{"client.rack": "use1-az1", "socket.keepalive.enable": true}':
    # kafka_extra to every librdkafka client, the two others to its producers or its consumers only
    # (e.g. '{"compression.type": "zstd"}'). librdkafka checks names and values at start. Refused:
    # properties a setting owns or the delivery guarantee depends on, connection and security ones
    # (Faust's client, aiokafka, does not take them), and secrets. Errors name properties, never values.
    kafka_extra: KafkaProperties = {}
    kafka_producer_extra: KafkaProperties = {}
    kafka_consumer_extra: KafkaProperties = {}

    # --- Kafka: the consumer group ---
    # Faust derives topic names from it (<group>-feedback-app-feedback-predictions-changelog, the
    # longest): the same characters, with room for the suffix.
    consumer_group: str = Field(default="stream-tagger", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    # Static membership (KIP-345): a stable id per worker instance, unique in the group (e.g. the pod
    # name of a StatefulSet). A worker back within session_timeout_ms keeps its partitions with no
    # rebalance at all; raise session_timeout_ms to cover a restart (e.g. 60000) when setting it, since
    # a dead or scaled-down worker's partitions then wait that long for a new owner. The hot path's
    # group only: Faust's (the feedback loop's) rebuilds its tables on a restart anyway. None: dynamic
    # membership, every start and stop rebalances.
    group_instance_id: str | None = Field(default=None, min_length=1)
    # The hot path's assignment strategy. cooperative-sticky rebalances incrementally: only partitions
    # that change owner are revoked, and the others are processed throughout. range and roundrobin
    # revoke every partition of every worker on each rebalance (eager). One group cannot mix the two
    # kinds: to switch, stop every worker (range is the one step between librdkafka's old default,
    # range,roundrobin, and cooperative-sticky that a rolling restart can take).
    assignment_strategy: Literal["cooperative-sticky", "range", "roundrobin"] = "cooperative-sticky"
    # Short enough that a dead worker's partitions move within seconds; Tansu's group join waits
    # about half of it, so tests lower it further. The upper bounds of these and of the hot path's
    # librdkafka settings below are librdkafka's, which would refuse more only as the hot path makes
    # its clients, after the model load and the group join.
    session_timeout_ms: int = Field(default=10_000, ge=1_000, le=3_600_000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100, le=3_600_000)
    # A consumer that does not poll for this long leaves the group. The hot path does not poll while
    # it waits for a batch's acks, so delivery_timeout_ms must stay below it by _POLL_MARGIN_MS.
    max_poll_interval_ms: int = Field(default=300_000, ge=10_000, le=86_400_000)

    # --- topics (names and partition counts; the worker creates the missing ones at start) ---
    topic_raw: str = "content.raw.v1"
    topic_tagged: str = "content.tagged.v1"
    topic_review: str = "content.review.v1"
    topic_dead_letter: str = "content.dead-letter.v1"
    topic_feedback: str = "content.feedback.v1"
    topic_shadow_disagreements: str = "content.shadow-disagreements.v1"
    partitions: int = Field(default=4, ge=1)
    # Durable by default: with 3 replicas and min.insync.replicas 2, an acked output survives the loss of
    # any one broker, and writes go on while one is down. A single-broker cluster (the embedded broker,
    # a laptop) needs 1 and 1; the worker says so in one line if it has fewer
    # brokers than this.
    replication_factor: int = Field(default=3, ge=1)
    min_insync_replicas: int | None = Field(default=2, ge=1)

    # --- model and routing ---
    model_dir: Path = Path("models/current")
    shadow_model_dir: Path | None = None
    # None: use the per-class thresholds chosen at training time and stored with the model.
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int = Field(default=2, ge=1, le=4)

    # --- online evaluation: feedback, shadow, drift, duplicates, hot reload ---
    # How often the worker re-reads the model pointers; a promotion serves from the next batch after.
    model_watch_interval_seconds: float = Field(default=2.0, gt=0)
    # Drift: PSI over the last N scored events; scores start after min_events (PSI of a few is noise).
    drift_window: int = Field(default=2_000, ge=1)
    drift_min_events: int = Field(default=200, ge=1)
    # Reposts are looked for among the last N distinct texts (a 64-bit key each).
    duplicates_window: int = Field(default=100_000, ge=1)
    # Online precision/recall over the last N feedback items.
    online_eval_window: int = Field(default=1_000, ge=1)
    # The feedback join reads every tagged event back through Faust's per-event machinery (~4k events/s
    # at most). In the worker's process it shares the hot path's GIL: at 1,000 events/s the Faust thread
    # held it ~62% of wall time vs the hot path's 10%, and under load the worker fell from ~3.6-4.3k to
    # 1.0-1.7k events/s. So by default it runs in its own process (`stream-tagger feedback-worker`);
    # true only for a single small process (tests, a laptop) where one process is simpler than two.
    feedback_in_worker: bool = False
    # The join's tables keep a prediction, and a correction that found no prediction, this long after
    # the feedback worker read it: without it they grow with every post ever tagged. At most a century
    # (both): a bound for what is meant as "for ever", far inside what the sweep's date arithmetic holds.
    feedback_retention_days: float = Field(default=30.0, gt=0, le=36_500)
    # A post waiting for a reviewer's decision is kept this long instead (and never less than the
    # above): a decision after it finds nothing to resolve, and a post nobody reviews must not stay for
    # ever.
    feedback_pending_retention_days: float = Field(default=180.0, gt=0, le=36_500)
    # How often the tables are swept for what is older than that.
    feedback_sweep_interval_s: float = Field(default=3_600.0, gt=0)
    # CPU priority (nice increment) of `stream-tagger feedback-worker`: on a host it shares with workers
    # it yields the CPU to their hot paths and catches up when they idle (its consumer lag shows it);
    # the join is not latency-critical, tagging is. 0 = the same priority.
    feedback_worker_nice: int = Field(default=10, ge=0, le=19)

    # --- hot path ---
    # Reached only under load. 4,096: 1.24x the events/s of 1,024 on 2 cores (fewer per-batch costs),
    # for ~35 MB more resident at saturation; a batch's bytes are bounded by the prefetch (decision 019).
    batch_max_size: int = Field(default=4096, ge=1)
    # How long a consume waits to fill a batch, counted from when the previous consume returned (at low
    # load, the longest an event waits for its batch; decision 016). At most a minute: a stop waits for
    # the consume in progress.
    batch_max_wait_ms: float = Field(default=5.0, ge=0.0, le=60_000)
    # A batch of fewer events says the input is sparse: the next consume then waits at most as long as
    # it has been since that batch was taken, and after a consume that returned nothing the next one
    # returns as the next event arrives. At low load an event waits for its batch about as long as a
    # batch takes (~1 ms), for more, smaller batches (CPU). 0: decision 016's wait alone (decision 018).
    sparse_batch_size: int = Field(default=16, ge=0)
    # A partial batch (published before the next is taken, decision 021) of n >= 2 x this many events is
    # finished in n // this parts of equal size, in order, the last once the next batch is taken: the
    # hot-path thread routes, encodes and produces one part while the scoring thread scores the next,
    # rather than each thread waiting for the other (decision 023). 0: never split; otherwise at least
    # MIN_PART_SIZE, as each part costs ~0.45 ms whatever its size.
    partial_batch_part_size: int = Field(default=1024, ge=0)
    max_event_bytes: int = Field(default=64 * 1024, ge=256)
    # A full batch is scored as this many chunks: the scoring thread takes them in order, and the
    # hot-path thread, rather than wait for the scoring thread, scores the ones not started yet.
    score_chunks: int = Field(default=2, ge=1)
    # The scoring thread runs this much nicer than the process (Linux gives each thread its own; 0: the
    # same priority). The hot-path thread is the loop's serial path, and the scoring thread's work the
    # hot-path thread can take over: when both want a core, the scheduler runs the hot path first
    # (decision 024).
    scoring_thread_nice: int = Field(default=15, ge=0, le=19)
    # Outcomes of the last N content ids: an id seen again (a producer retry) gets the same outcome
    # without being scored again (pipeline.py). Not ``duplicates_window``, which matches reposted text.
    dedup_window_size: int = Field(default=100_000, ge=0)
    # Producer batching delay: each ms is a ms of latency at low load (decision 016).
    linger_ms: float = Field(default=1.0, ge=0.0, le=900_000.0)
    # at_least_once: outputs acked, then offsets stored (a crash re-publishes the last batches, same
    # outcomes under the same keys). exactly_once: each batch's outputs and offsets in one Kafka
    # transaction, so readers with isolation.level=read_committed see every output once; it costs a
    # commit round trip per batch.
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    # exactly_once: the producer's transactional.id. Set a stable one per worker instance (e.g. the pod
    # name of a StatefulSet) so that a restarted worker aborts what its previous life left open at once;
    # None gives each process a new one, and a crashed worker's open transaction then holds
    # read_committed readers back until transaction_timeout_ms passes.
    transactional_id: str | None = None
    transaction_timeout_ms: int = Field(default=10_000, ge=1_000, le=2_147_483_647)
    # An output the broker has not acked after this long stops the worker (exit 1) instead of being
    # skipped: its input's offset is never committed, so a restart re-processes it.
    delivery_timeout_ms: int = Field(default=120_000, ge=1_000)
    # Consumer prefetch bound. librdkafka's defaults (64 MB, and 100,000 messages per partition,
    # queued locally) held ~50 MB more at saturation for nothing: the loop takes one batch at a time
    # and one fetch refills the queue long before a few batches of it are used up. The kbytes bound is
    # the one that binds (librdkafka: it applies to the whole consumer queue and wins over the
    # per-partition message count): 4 MB is ~14,000 raw events (~290 bytes each), ~0.7 s of work.
    consumer_prefetch_kbytes: int = Field(default=4_096, ge=64, le=2_097_151)
    consumer_prefetch_messages: int = Field(default=5_000, ge=1, le=10_000_000)
    # Once the queue reached those bounds librdkafka waits this long before fetching again (its default
    # is 1 s: with the small queue above the loop drained it first and throughput halved, 13k -> 6k/s).
    # At least 1: 0 would re-check a full queue without pause.
    fetch_queue_backoff_ms: int = Field(default=5, ge=1, le=300_000)
    # One fetch response's size (librdkafka: 50 MB, 1 MB per partition): smaller responses are buffered
    # whole, so this is memory too (peak RSS ~290 -> ~285 MB, same events/s). A larger message still
    # comes through: the broker always returns at least one. librdkafka refuses a fetch.max.bytes below
    # its message.max.bytes (1,000,000), hence the floor.
    fetch_max_kbytes: int = Field(default=1_024, ge=1_024, le=2_097_151)
    fetch_partition_max_kbytes: int = Field(default=256, ge=16, le=976_562)
    # How often librdkafka reports per-partition lag (stream_tagger_consumer_lag); cheap, off the hot path.
    lag_interval_ms: int = Field(default=5_000, ge=100, le=86_400_000)
    # Longest a fetch waits at the broker for new data. Kafka answers as soon as data arrives; Tansu
    # sleeps half the remaining wait after an empty look: low values keep latency low on both.
    fetch_wait_max_ms: int = Field(default=5, ge=1, le=300_000)
    # At start the worker waits for the broker, saying so in the log at each attempt: the first retry
    # after broker_retry_seconds, each wait twice the one before up to broker_retry_max_seconds, and
    # for at most broker_wait_limit_seconds in all (then it exits 1 in one line; unset: for ever). A
    # wait is at most an hour, a sanity bound far inside what the clock arithmetic of a wait holds.
    broker_retry_seconds: float = Field(default=2.0, gt=0, le=3_600)
    broker_retry_max_seconds: float = Field(default=30.0, gt=0, le=3_600)
    broker_wait_limit_seconds: float | None = Field(default=None, gt=0)
    # The keyword baseline costs ~7 us a post, half what the model does: check every Nth scored event
    # only. Its agreement is a rate, and 1 in 100 still checks 600 posts a minute at 1,000 events/s.
    rules_baseline_stride: int = Field(default=100, ge=1)

    # --- web: /metrics, /healthz, /ready ---
    web_host: str = "0.0.0.0"
    web_port: int = Field(default=6066, ge=0, le=65535)
    # /healthz turns red when lag grew and nothing was processed for this long.
    stall_seconds: float = Field(default=60.0, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # text lines, or one JSON object per line (with topic, partition, offset, content_id where known).
    log_format: Literal["text", "json"] = "text"

    def __init__(self, **values: Any) -> None:
        """Settings from the environment, ``values`` on top; ``SettingsError`` if they cannot be used."""
        unknown = _unknown_variables(type(self))
        if unknown:
            raise SettingsError(unknown)
        try:
            super().__init__(**values)
        except ValidationError as exc:  # its text would show the input of a secret
            raise SettingsError(_problems(exc, values)) from None

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object, info: ValidationInfo) -> object:
        """An empty value of a setting that can be unset unsets it, as `stream-tagger config` prints
        an unset one; the others keep their own meaning of empty (or refuse it)."""
        field = cls.model_fields.get(info.field_name or "")
        if value == "" and field is not None and type(None) in get_args(field.annotation):
            return None
        return value

    @field_validator("partial_batch_part_size")
    @classmethod
    def _part_size(cls, value: int) -> int:
        if 0 < value < MIN_PART_SIZE:
            raise ValueError(
                f"0 (never split) or at least {MIN_PART_SIZE} events: each part has a fixed cost"
            )
        return value

    @field_validator("security_protocol", "sasl_mechanism", "log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("bootstrap_servers")
    @classmethod
    def _broker_list(cls, value: str) -> str:
        """host:port entries, comma-separated: librdkafka would also take "PLAINTEXT://h:p" and skip
        an empty entry, and Faust would make those "plaintext:9092" and 127.0.0.1:9092."""
        entries = [entry.strip() for entry in value.split(",")]
        for entry in entries:  # the checks librdkafka and Faust would each resolve their own way
            if not entry:
                raise ValueError("an empty entry: give host:port entries, comma-separated")
            if "://" in entry:
                raise ValueError(
                    f"{entry}: give host:port without a protocol (that is STREAM_TAGGER_SECURITY_PROTOCOL)"
                )
        return ",".join(map(_host_and_port, entries))

    @field_validator("oauth_token_endpoint_url")
    @classmethod
    def _url_without_secrets(cls, value: HttpUrl | None) -> HttpUrl | None:
        """The URL is shown (`stream-tagger config`, the token errors), so it holds no secret: the
        client's credentials come from the OAUTH_CLIENT_* settings (aiohttp refuses a user name in the
        URL beside them). A query may name a policy or tenant (Azure AD B2C's ``?p=B2C_1_...``), not a
        secret."""
        if value is None:
            return value
        credentials = (
            "the client's credentials are STREAM_TAGGER_OAUTH_CLIENT_ID and STREAM_TAGGER_OAUTH_CLIENT_SECRET"
        )
        # Parameter names, split at '&' and ';' as servers may; not named in the error (a value-less
        # parameter's name may be the secret itself).
        names = [part.partition("=")[0].lower() for part in re.split("[&;]", value.query or "")]
        if value.username is not None or value.password is not None:
            part, instead = "a user name or password", credentials
        elif any(looks_secret(name) or name.endswith(_URL_SECRET_MARKERS) for name in names):
            part, instead = "a query parameter whose name says it holds a secret", credentials
        elif value.fragment is not None:
            part = "a fragment"
            instead = "the request's parameters are the grant type and STREAM_TAGGER_OAUTH_SCOPE"
        else:
            return value
        raise ValueError(
            f"{part} in the URL is not allowed (the URL is shown in logs and by `stream-tagger config`): "
            f"{instead}"
        )

    @field_validator("oauth_client_id")
    @classmethod
    def _basic_auth_user(cls, value: str | None) -> str | None:
        """The token request sends the id as HTTP Basic authentication's user-id, which ends at the first
        ':' (RFC 7617): aiohttp refuses it, as Faust's token provider is made."""
        if value is not None and ":" in value:
            raise ValueError(
                "a ':' is not allowed: the token request sends the id as HTTP Basic authentication's "
                "user-id (RFC 7617), which ends at the first ':'"
            )
        return value

    @field_validator("oauth_extensions")
    @classmethod
    def _sasl_extensions(cls, value: str | None) -> str | None:
        """Pairs that librdkafka (split at ',', then at the first '=') and aiokafka send alike."""
        if value is not None:
            keys: set[str] = set()
            for key, equals, item in _extension_pairs(value):
                if not (equals and _EXTENSION_KEY.fullmatch(key) and _EXTENSION_VALUE.fullmatch(item)):
                    raise ValueError(
                        f"{key + equals + item!r} is not key=value (a key of letters; a value of printable "
                        "ASCII without ',' or '\\', no space at its ends); pairs comma-separated, e.g. "
                        "logicalCluster=lkc-abc12,identityPoolId=pool-1"
                    )
                if key == "auth":
                    raise ValueError("'auth' is the token's own key (RFC 7628), not an extension")
                if key in keys:
                    raise ValueError(f"{key!r} is given twice")
                keys.add(key)
        return value

    @field_validator(*TOPIC_ROLES)
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not _TOPIC.fullmatch(value) or value in (".", ".."):
            raise ValueError("a topic name is 1 to 249 of A-Z, a-z, 0-9, '.', '_' and '-'")
        return value

    @field_validator("kafka_extra", "kafka_producer_extra", "kafka_consumer_extra", mode="before")
    @classmethod
    def _properties_from_json(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise ValueError('a JSON object of librdkafka properties, e.g. {"client.rack": "use1-az1"}')
        # librdkafka takes every value as a string; JSON's true and 5 mean "true" and "5".
        return {
            key: json.dumps(item) if isinstance(item, bool | int | float) else item
            for key, item in value.items()
        }

    @field_validator("kafka_extra", "kafka_producer_extra", "kafka_consumer_extra")
    @classmethod
    def _properties_allowed(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key in _OWNED_PROPERTIES:
                raise ValueError(f"{key} is set by {_OWNED_PROPERTIES[key]}, not here")
            if key in _PYTHON_CLIENT_PROPERTIES:
                raise ValueError(f"{key} is confluent-kafka's own property, which the package sets")
            prefix = next((prefix for prefix in _CONNECTION_PREFIXES if key.startswith(prefix)), None)
            if prefix is not None:
                raise ValueError(
                    f"{key} would reach librdkafka's clients but not Faust's; connection and security "
                    f"come from {_CONNECTION_PREFIXES[prefix]}, which reach both"
                )
            if looks_secret(key):
                raise ValueError(f"{key} looks like a secret, which has no place in the environment")
        # Dead letters carry up to DEAD_LETTER_MAX_BYTES of the input, sized for librdkafka's default: a
        # lower limit would refuse one, and the hot path would stop on that offset at every restart.
        # librdkafka reads the value with strtol (base 0, up to the first character it cannot read, cut
        # to an int): " 1000", "0x3e8", "1000.0" or "4294968296" are 1000 to it. Only a plain decimal
        # within its range is read as written, so only that is taken.
        limit = value.get("message.max.bytes")
        if limit is not None and not (
            _DECIMAL.fullmatch(limit) and _MIN_MESSAGE_MAX_BYTES <= int(limit) <= _MAX_MESSAGE_MAX_BYTES
        ):
            raise ValueError(
                f"message.max.bytes: a whole number of bytes in decimal digits, from "
                f"{_MIN_MESSAGE_MAX_BYTES:,} (a dead letter is sized for librdkafka's default) to "
                f"{_MAX_MESSAGE_MAX_BYTES:,} (librdkafka's largest)"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        self._read_secret_files()
        self._check_security()
        self._check_group_timeouts()
        self._check_producer_timeouts()
        self._check_topics_distinct()
        # Kafka answers every acks=all write to such a topic with NOT_ENOUGH_REPLICAS.
        if self.min_insync_replicas is not None and self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"STREAM_TAGGER_MIN_INSYNC_REPLICAS ({self.min_insync_replicas}) exceeds "
                f"STREAM_TAGGER_REPLICATION_FACTOR ({self.replication_factor}): every "
                "acknowledged write would fail"
            )
        # Last: the checks above name the settings at fault, librdkafka's would blame the pass-through.
        self._check_properties()
        return self

    def _check_producer_timeouts(self) -> None:
        if self.delivery_timeout_ms > self.max_poll_interval_ms - _POLL_MARGIN_MS:
            raise ValueError(
                f"STREAM_TAGGER_DELIVERY_TIMEOUT_MS ({self.delivery_timeout_ms}) must be at "
                f"least {_POLL_MARGIN_MS} below STREAM_TAGGER_MAX_POLL_INTERVAL_MS "
                f"({self.max_poll_interval_ms}): the hot path does not poll while it waits "
                "for acks, and a worker that does not poll in time is put out of the group"
            )
        # librdkafka refuses a producer whose messages would time out while they linger.
        limit, name = self.delivery_timeout_ms, "STREAM_TAGGER_DELIVERY_TIMEOUT_MS"
        if self.processing_guarantee == "exactly_once" and self.transaction_timeout_ms < limit:
            limit, name = self.transaction_timeout_ms, "STREAM_TAGGER_TRANSACTION_TIMEOUT_MS"
        if self.linger_ms >= limit:
            raise ValueError(f"STREAM_TAGGER_LINGER_MS ({self.linger_ms:g}) must be below {name} ({limit})")

    def _check_topics_distinct(self) -> None:
        # One topic in two roles mixes them: a dead-letter topic that is the raw topic, say, would
        # make the worker read its own dead letters.
        roles: dict[str, str] = {}
        for field in TOPIC_ROLES:
            name = getattr(self, field)
            if name in roles:
                raise ValueError(
                    f"{env_name(roles[name])} and {env_name(field)} are both {name}: each role needs "
                    "its own topic"
                )
            roles[name] = field

    def _check_group_timeouts(self) -> None:
        # A member whose heartbeats come no faster than its session ends would leave the group between
        # two of them (Kafka advises at most a third of it, which librdkafka does not require).
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                f"STREAM_TAGGER_HEARTBEAT_INTERVAL_MS ({self.heartbeat_interval_ms}) must be below "
                f"STREAM_TAGGER_SESSION_TIMEOUT_MS ({self.session_timeout_ms})"
            )
        # librdkafka refuses the consumer otherwise.
        if self.max_poll_interval_ms < self.session_timeout_ms:
            raise ValueError(
                f"STREAM_TAGGER_MAX_POLL_INTERVAL_MS ({self.max_poll_interval_ms}) must be at least "
                f"STREAM_TAGGER_SESSION_TIMEOUT_MS ({self.session_timeout_ms})"
            )

    def _read_secret_files(self) -> None:
        for name in SECRETS:
            path: Path | None = getattr(self, f"{name}_file")
            if path is None:
                continue
            variable = env_name(f"{name}_file")
            try:
                value = path.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{variable}: cannot read {path}: {exc}") from None
            if not value:
                raise ValueError(f"{variable}: {path} is empty")
            given: SecretStr | None = getattr(self, name)
            if given is not None and given.get_secret_value() != value:
                raise ValueError(
                    f"{env_name(name)} and {variable} are both set, to different values: set one"
                )
            setattr(self, name, SecretStr(value))

    def _check_security(self) -> None:
        """Refuse a mechanism without its credentials, and a setting of a protocol or mechanism not in
        use: clients would ignore it, and the operator meant something else."""
        protocol, mechanism = self.security_protocol, self.sasl_mechanism
        tls = protocol in ("SSL", "SASL_SSL")
        sasl = protocol.startswith("SASL_")
        oauth = sasl and mechanism == "OAUTHBEARER"
        login = sasl and mechanism is not None and not oauth
        required = {
            "sasl_mechanism": sasl,
            "sasl_username": login,
            "sasl_password": login,
            "oauth_token_endpoint_url": oauth,
            "oauth_client_id": oauth,
            "oauth_client_secret": oauth,
        }
        missing = [
            env_name(name) for name, needed in required.items() if needed and getattr(self, name) is None
        ]
        if missing:
            raise ValueError(f"{' and '.join(missing)} must be set with {mechanism or protocol}")
        used = {
            **dict.fromkeys(("ssl_ca_file", "ssl_cert_file", "ssl_key_file", "ssl_key_password"), tls),
            "sasl_mechanism": sasl,
            "sasl_username": login,
            "sasl_password": login,
            **dict.fromkeys(
                (
                    "oauth_token_endpoint_url",
                    "oauth_client_id",
                    "oauth_client_secret",
                    "oauth_scope",
                    "oauth_extensions",
                    "oauth_ca_file",
                ),
                oauth,
            ),
        }
        for name, in_use in used.items():
            if getattr(self, name) is not None and not in_use:
                by_protocol = name.startswith("ssl_") or name == "sasl_mechanism" or not sasl
                why = (
                    f"STREAM_TAGGER_SECURITY_PROTOCOL is {protocol}"
                    if by_protocol
                    else f"STREAM_TAGGER_SASL_MECHANISM is {mechanism}"
                )
                raise ValueError(f"{env_name(name)} is set but not used: {why}")
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            raise ValueError(
                "STREAM_TAGGER_SSL_CERT_FILE and STREAM_TAGGER_SSL_KEY_FILE go together (mutual TLS)"
            )
        if self.ssl_key_password is not None and self.ssl_key_file is None:
            raise ValueError(
                "STREAM_TAGGER_SSL_KEY_PASSWORD is set but not used: no STREAM_TAGGER_SSL_KEY_FILE"
            )
        if tls:
            self._check_tls_files()
        if self.oauth_ca_file is not None:
            _ca_context("oauth_ca_file", self.oauth_ca_file)

    def _check_tls_files(self) -> None:
        """Load the PEM files as a client will, so that a wrong file or key password fails at start."""
        context = _ca_context("ssl_ca_file", self.ssl_ca_file)
        if self.ssl_cert_file is None or self.ssl_key_file is None:
            return
        try:
            context.load_cert_chain(self.ssl_cert_file, self.ssl_key_file, key_password(self))
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(
                f"STREAM_TAGGER_SSL_CERT_FILE and STREAM_TAGGER_SSL_KEY_FILE: cannot use "
                f"{self.ssl_cert_file} with {self.ssl_key_file} ({exc})"
            ) from None

    def _check_properties(self) -> None:
        """librdkafka's own check of the clients' configurations, as it makes a client: each
        pass-through alone (so that a problem names its variable), then the hot path's producer and
        consumer whole (the pass-through against the settings, e.g. group.protocol=consumer with a
        session timeout). Without the brokers' addresses and the connection properties, nothing
        connects: no broker, no OIDC token endpoint."""
        from stream_tagger.kafka.config import consumer_config, producer_config  # they import this module

        def given(*fields: str) -> tuple[str, ...]:
            return tuple(env_name(field) for field in fields if getattr(self, field))

        checks = (
            (given("kafka_extra"), Producer, self.kafka_extra),
            (given("kafka_producer_extra"), Producer, self.kafka_producer_extra),
            (given("kafka_consumer_extra"), Consumer, {**self.kafka_consumer_extra, "group.id": "check"}),
            (
                given("kafka_extra", "kafka_producer_extra"),
                Producer,
                producer_config(self, on_delivery=lambda _error, _message: None),
            ),
            (given("kafka_extra", "kafka_consumer_extra"), Consumer, consumer_config(self)),
        )
        for names, client, properties in checks:
            if not names:  # no pass-through: the settings' own bounds and checks are librdkafka's
                continue
            try:
                made = client({**_offline(properties), "logger": _QUIET})
            except (KafkaException, TypeError, ValueError) as exc:
                reason = exc.args[0].str() if isinstance(exc, KafkaException) else str(exc)
                reason = reason.removeprefix(f"Failed to create {client.__name__.lower()}: ")
                raise ValueError(f"{' and '.join(names)}: {self._refusal(reason, names)}") from None
            if isinstance(made, Consumer):
                made.close()

    def _refusal(self, reason: str, names: tuple[str, ...]) -> str:
        """librdkafka's reason on one line, unless it shows the refused value (a secret under an
        innocent name, perhaps): then only the names of the properties the variables ``names`` gave."""
        if _SHOWS_VALUE.search(reason):
            given = {key for field in EXTRAS if env_name(field) in names for key in getattr(self, field)}
            return "librdkafka refuses a value of " + ", ".join(sorted(given))
        return " ".join(reason.split())

    def kafka_common(self) -> dict[str, str]:
        """librdkafka properties shared by every client (producer, consumer, admin)."""
        from stream_tagger.kafka.config import librdkafka_common  # it imports this module

        return librdkafka_common(self)

    def as_environment(self, mask_secrets: bool = True) -> dict[str, str]:
        """The ``STREAM_TAGGER_*`` variables that give these settings ('' for unset), secrets masked."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                text = ""
            elif isinstance(value, SecretStr):
                text = MASK if mask_secrets else value.get_secret_value()
            elif isinstance(value, bool):
                text = str(value).lower()
            elif isinstance(value, dict):
                shown = {
                    key: MASK if mask_secrets and looks_secret(key) else item for key, item in value.items()
                }
                text = json.dumps(shown) if shown else ""
            else:
                text = str(value)
            env[env_name(name)] = text
        return env

    def oauth_extension_pairs(self) -> dict[str, str]:
        """``oauth_extensions`` as a mapping, key -> value."""
        pairs = _extension_pairs(self.oauth_extensions) if self.oauth_extensions is not None else []
        return {key: item for key, _equals, item in pairs}

    def brokers(self) -> list[str]:
        """The brokers' host:port addresses, as every client of the process gets them."""
        return self.bootstrap_servers.split(",")

    def topics(self) -> list[str]:
        """Every topic the service reads (raw, feedback) or writes, created together with one partition
        count: the feedback join needs the tagged and feedback topics co-partitioned."""
        return [getattr(self, field) for field in TOPIC_ROLES]
