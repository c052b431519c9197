"""Every Kafka client's configuration, made from the one ``Settings``.

Connection and security are the same for every client of the process: ``librdkafka_common`` gives
them to librdkafka's (hot path, topic admin, produce, tail, demo, export-feedback) and
``faust_credentials`` to Faust's aiokafka client, so that no client of a process connects in plaintext
while another uses TLS, or logs in differently. Producers of both libraries partition keys with
Kafka's Java default (murmur2): a key lands on the partition any Java client would choose.

The hot path's delivery guarantees live here too. At-least-once comes from three settings working
together: offsets are stored by hand (``enable.auto.offset.store=false``) only after the broker acked
every output of a batch, and the auto-committer only ever commits stored offsets; the producer is
idempotent with ``acks=all``, so its own retries never duplicate or reorder an output.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import faust
from aiokafka.abc import AbstractTokenProvider
from faust.types.auth import CredentialsT
from pydantic import SecretStr

from stream_tagger.settings import Settings, key_password

# librdkafka's own log lines (every failed connection attempt, say) go through logging instead of raw
# stderr, so a command can report the one line that matters. Every client of the package uses it. They
# show where a process configured logging (worker, feedback worker); elsewhere the handler keeps
# Python's last-resort handler from printing them.
KAFKA_LOG = logging.getLogger("stream_tagger.librdkafka")
KAFKA_LOG.addHandler(logging.NullHandler())

#: librdkafka's name for the Java client's default partitioner (murmur2 of the key; no key: random).
JAVA_PARTITIONER = "murmur2_random"


def librdkafka_common(settings: Settings) -> dict[str, str]:
    """librdkafka properties of every client: brokers, TLS, SASL, and the ``kafka_extra`` pass-through."""
    conf = {"bootstrap.servers": settings.bootstrap_servers, "security.protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        broker_ca = _ca_location(settings.ssl_ca_file)
        if broker_ca is not None:
            conf["ssl.ca.location"] = broker_ca
        if settings.ssl_cert_file is not None and settings.ssl_key_file is not None:
            conf["ssl.certificate.location"] = str(settings.ssl_cert_file)
            conf["ssl.key.location"] = str(settings.ssl_key_file)
        if settings.ssl_key_password is not None:
            conf["ssl.key.password"] = settings.ssl_key_password.get_secret_value()
        conf["ssl.endpoint.identification.algorithm"] = "https" if settings.ssl_check_hostname else "none"
    if settings.sasl_mechanism == "OAUTHBEARER":
        assert settings.oauth_client_secret is not None  # Settings requires it with OAUTHBEARER
        conf.update(
            {
                "sasl.mechanism": "OAUTHBEARER",
                "sasl.oauthbearer.method": "oidc",
                "sasl.oauthbearer.token.endpoint.url": str(settings.oauth_token_endpoint_url),
                "sasl.oauthbearer.client.id": str(settings.oauth_client_id),
                "sasl.oauthbearer.client.secret": settings.oauth_client_secret.get_secret_value(),
            }
        )
        token_ca = _ca_location(settings.oauth_ca_file)  # the token endpoint's, as Faust's provider
        if token_ca is not None:
            conf["https.ca.location"] = token_ca
        if settings.oauth_scope:
            conf["sasl.oauthbearer.scope"] = settings.oauth_scope
        if settings.oauth_extensions:
            conf["sasl.oauthbearer.extensions"] = settings.oauth_extensions
    elif settings.sasl_mechanism is not None:
        assert settings.sasl_password is not None  # Settings requires it with PLAIN and SCRAM
        conf["sasl.mechanism"] = settings.sasl_mechanism
        conf["sasl.username"] = str(settings.sasl_username)
        conf["sasl.password"] = settings.sasl_password.get_secret_value()
    return {**conf, **settings.kafka_extra}


def _ca_location(ca_file: Path | None) -> str | None:
    """What librdkafka trusts, as Python's TLS (Faust's client) does: the CA file, else the system's
    bundle as Python finds it (SSL_CERT_FILE included), which the wheel's librdkafka would look for
    where the distribution it was built on keeps one. A bundle file only: a directory works for
    librdkafka only if it is hashed (c_rehash), which RHEL's is not; without a file librdkafka keeps
    its own lookup."""
    return str(ca_file) if ca_file is not None else ssl.get_default_verify_paths().cafile


def producer_common(settings: Settings) -> dict[str, str]:
    """What every librdkafka producer of the package starts from: the common properties, Kafka's Java
    default partitioner (librdkafka's own default, consistent_random, puts a key elsewhere), and the
    producer pass-through."""
    return {**librdkafka_common(settings), "partitioner": JAVA_PARTITIONER, **settings.kafka_producer_extra}


def consumer_common(settings: Settings) -> dict[str, str]:
    """What every librdkafka consumer of the package starts from: the common properties and the
    consumer pass-through."""
    return {**librdkafka_common(settings), **settings.kafka_consumer_extra}


def admin_config(settings: Settings, on_error: Callable[[Any], None] | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {**librdkafka_common(settings), "logger": KAFKA_LOG}
    if on_error is not None:
        conf["error_cb"] = on_error
    return conf


def consumer_config(
    settings: Settings,
    on_stats: Callable[[str], None] | None = None,
    on_error: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    conf: dict[str, Any] = {
        **consumer_common(settings),
        "group.id": settings.consumer_group,
        # Incremental rebalances: HotPath's callbacks take only the partitions that move (see settings).
        "partition.assignment.strategy": settings.assignment_strategy,
        "max.poll.interval.ms": settings.max_poll_interval_ms,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1_000,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": settings.heartbeat_interval_ms,
        "fetch.wait.max.ms": settings.fetch_wait_max_ms,
        "queued.max.messages.kbytes": settings.consumer_prefetch_kbytes,
        "queued.min.messages": settings.consumer_prefetch_messages,
        "fetch.queue.backoff.ms": settings.fetch_queue_backoff_ms,
        "fetch.max.bytes": settings.fetch_max_kbytes * 1024,
        "max.partition.fetch.bytes": settings.fetch_partition_max_kbytes * 1024,
        "logger": KAFKA_LOG,
    }
    if settings.group_instance_id is not None:
        conf["group.instance.id"] = settings.group_instance_id
    if settings.processing_guarantee == "exactly_once":
        # Offsets are committed inside each batch's transaction, never by the consumer itself.
        conf["enable.auto.commit"] = False
        conf["isolation.level"] = "read_committed"
    if on_stats is not None:
        conf["statistics.interval.ms"] = settings.lag_interval_ms
        conf["stats_cb"] = on_stats
    if on_error is not None:
        conf["error_cb"] = on_error
    return conf


def producer_config(
    settings: Settings, on_delivery: Callable[[Any, Any], None], on_error: Callable[[Any], None] | None = None
) -> dict[str, Any]:
    conf: dict[str, Any] = {
        **producer_common(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.linger_ms,
        "message.timeout.ms": settings.delivery_timeout_ms,
        "on_delivery": on_delivery,
        # Success is known from flush() returning with no error reported; a Python callback per
        # acked output would cost ~1 µs each on the hot path.
        "delivery.report.only.error": True,
        "logger": KAFKA_LOG,
    }
    if settings.processing_guarantee == "exactly_once":
        own_id = f"{settings.consumer_group}-{uuid.uuid4().hex}"
        conf["transactional.id"] = settings.transactional_id or own_id
        conf["transaction.timeout.ms"] = settings.transaction_timeout_ms
        # librdkafka refuses a message timeout longer than the transaction's.
        conf["message.timeout.ms"] = min(settings.delivery_timeout_ms, settings.transaction_timeout_ms)
    if on_error is not None:
        conf["error_cb"] = on_error
    return conf


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """Python's TLS context for the same trust, client certificate and hostname check as
    ``librdkafka_common``; None when the protocol has no TLS."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.ssl_ca_file)
    if settings.ssl_cert_file is not None and settings.ssl_key_file is not None:
        context.load_cert_chain(settings.ssl_cert_file, settings.ssl_key_file, key_password(settings))
    context.check_hostname = settings.ssl_check_hostname
    return context


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """``broker_credentials`` of a Faust app: the same protocol, TLS and login as ``librdkafka_common``
    (Faust gives them to every aiokafka client it makes: consumer, producer, topic admin)."""
    context = ssl_context(settings)
    if settings.sasl_mechanism == "OAUTHBEARER":
        return faust.OAuthCredentials(oauth_cb=OidcTokenProvider(settings), ssl_context=context)
    if settings.sasl_mechanism is not None:
        assert settings.sasl_password is not None  # Settings requires it with PLAIN and SCRAM
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class TokenError(RuntimeError):
    """The OIDC token endpoint did not give a token."""


class OidcTokenProvider(AbstractTokenProvider):
    """OAUTHBEARER tokens for aiokafka by the OIDC client-credentials grant, asked for as librdkafka's
    ``sasl.oauthbearer.method=oidc`` asks (form POST, HTTP Basic client id and secret, the scope if
    set) and kept until 80% of their lifetime, as librdkafka keeps them."""

    def __init__(self, settings: Settings) -> None:
        assert settings.oauth_client_secret is not None  # Settings requires it with OAUTHBEARER
        self.url = str(settings.oauth_token_endpoint_url)
        self._headers = {
            "Authorization": aiohttp.encode_basic_auth(
                str(settings.oauth_client_id), settings.oauth_client_secret.get_secret_value()
            )
        }
        self._ssl = ssl.create_default_context(cafile=settings.oauth_ca_file)  # librdkafka's trust too
        self._form = {"grant_type": "client_credentials"}
        if settings.oauth_scope:
            self._form["scope"] = settings.oauth_scope
        self._extensions = settings.oauth_extension_pairs()
        self._token: SecretStr | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()  # several connections authenticate at once: one request for all

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                token, lifetime = await self._request()
                self._token, self._renew_at = SecretStr(token), time.monotonic() + 0.8 * lifetime
            return self._token.get_secret_value()

    def extensions(self) -> dict[str, str]:
        """The SASL extensions aiokafka sends with the token (``oauth_extensions``), as librdkafka does."""
        return self._extensions

    async def _request(self) -> tuple[str, float]:
        timeout = aiohttp.ClientTimeout(total=10)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.url, data=self._form, headers=self._headers, ssl=self._ssl) as response,
            ):
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TokenError(f"OIDC token endpoint {self.url}: {exc or type(exc).__name__}") from exc
        try:
            body = json.loads(text)
            token = body["access_token"]
        except (ValueError, KeyError, TypeError):
            raise TokenError(
                f"OIDC token endpoint {self.url} answered {response.status} "
                f"without an access_token: {text[:200]}"
            ) from None
        return token, _lifetime(body, token)


def _lifetime(body: dict[str, Any], token: str) -> float:
    """Seconds the token is valid: ``expires_in``, else the JWT's ``exp`` claim, else a minute."""
    if isinstance(body.get("expires_in"), int | float):
        return float(body["expires_in"])
    try:
        payload = token.split(".")[1]
        exp = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
        return max(float(exp) - time.time(), 0.0)
    except (IndexError, ValueError, KeyError, TypeError):
        return 60.0
