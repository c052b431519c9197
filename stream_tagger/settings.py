"""The one settings object: every knob comes from ``STREAM_TAGGER_*`` environment variables.

Nothing else in the package reads ``os.environ``; a command or a test builds ``Settings(...)`` with
overrides and hands it down, so a run is described completely by one object that can be logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The only tags the product may ever show to users.
APPROVED_TAGS: tuple[str, ...] = ("computer-vision", "mlops", "natural-language-processing", "other")


class KernelSettings(BaseSettings):
    """The one setting read when the package is imported (``compiled.py``), apart from the rest so that
    a bad value elsewhere fails where settings are used, with their error, not at ``import``."""

    model_config = SettingsConfigDict(env_prefix="STREAM_TAGGER_", extra="ignore")

    # Where the featuriser's and duplicate check's kernels come from (compiled.py): "auto" takes the
    # module `stream-tagger compile` built for this exact source (no numba in the process, ~120 MB less
    # resident), else numba's JIT; "jit" always takes numba's JIT (building that module needs it).
    kernels: Literal["auto", "jit"] = "auto"


class Settings(KernelSettings):
    """Runtime configuration of the worker and the command line tools."""


    # --- Kafka ---
    bootstrap_servers: str = "127.0.0.1:19092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    consumer_group: str = "stream-tagger"
    # Short enough that a dead worker's partitions move within seconds; Tansu's group join waits
    # about half of it, so tests lower it further.
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)

    # --- topics (names and partition counts; the worker creates the missing ones at start) ---
    topic_raw: str = "content.raw.v1"
    topic_tagged: str = "content.tagged.v1"
    topic_review: str = "content.review.v1"
    topic_dead_letter: str = "content.dead-letter.v1"
    topic_feedback: str = "content.feedback.v1"
    topic_shadow_disagreements: str = "content.shadow-disagreements.v1"
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    # min.insync.replicas of the topics the worker creates; None leaves the broker's default (1). With
    # replication 3, 2 means an acked output survives the loss of any one broker, and writes go on
    # while one is down.
    min_insync_replicas: int | None = Field(default=None, ge=1)

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
    # The join's tables keep a prediction this long after it was made, and a correction that found no
    # prediction this long after it was written: without it they grow with every post ever tagged.
    feedback_retention_days: float = Field(default=30.0, gt=0)
    # How often the tables are swept for what is older than that.
    feedback_sweep_interval_s: float = Field(default=3_600.0, gt=0)
    # CPU priority (nice increment) of `stream-tagger feedback-worker`: on a host it shares with workers
    # it yields the CPU to their hot paths and catches up when they idle (its consumer lag shows it);
    # the join is not latency-critical, tagging is. 0 = the same priority.
    feedback_worker_nice: int = Field(default=10, ge=0, le=19)

    # --- hot path ---
    # 1,024: ~10% more events/s than 512 on 2 cores (fewer per-batch costs); it was held back while the
    # worker peaked at ~300 MB, and costs ~6 MB more now that its kernels load without numba (~180 MB).
    batch_max_size: int = Field(default=1024, ge=1)
    batch_max_wait_ms: float = Field(default=5.0, ge=0.0)
    max_event_bytes: int = Field(default=64 * 1024, ge=256)
    # A full batch is scored as this many chunks: the scoring thread takes them in order, and the
    # hot-path thread, rather than wait for the scoring thread, scores the ones not started yet.
    score_chunks: int = Field(default=2, ge=1)
    # Outcomes of the last N content ids: an id seen again (a producer retry) gets the same outcome
    # without being scored again (pipeline.py). Not ``duplicates_window``, which matches reposted text.
    dedup_window_size: int = Field(default=100_000, ge=0)
    # Producer batching delay: a few ms lets one request carry a whole micro-batch's outputs.
    linger_ms: float = Field(default=2.0, ge=0.0)
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
    transaction_timeout_ms: int = Field(default=10_000, ge=1_000)
    # An output the broker has not acked after this long stops the worker (exit 1) instead of being
    # skipped: its input's offset is never committed, so a restart re-processes it.
    delivery_timeout_ms: int = Field(default=120_000, ge=1_000)
    # Consumer prefetch bound. librdkafka's defaults (64 MB, and 100,000 messages per partition,
    # queued locally) held ~50 MB more at saturation for nothing: the loop takes one batch at a time
    # and one fetch refills the queue long before a few batches of it are used up. The kbytes bound is
    # the one that binds (librdkafka: it applies to the whole consumer queue and wins over the
    # per-partition message count): 4 MB is ~14,000 raw events (~290 bytes each), ~0.7 s of work.
    consumer_prefetch_kbytes: int = Field(default=4_096, ge=64)
    consumer_prefetch_messages: int = Field(default=5_000, ge=1)
    # Once the queue reached those bounds librdkafka waits this long before fetching again (its default
    # is 1 s: with the small queue above the loop drained it first and throughput halved, 13k -> 6k/s).
    fetch_queue_backoff_ms: int = Field(default=5, ge=1)  # 0 would re-check a full queue without pause
    # One fetch response's size (librdkafka: 50 MB, 1 MB per partition): smaller responses are buffered
    # whole, so this is memory too (peak RSS ~290 -> ~285 MB, same events/s). A larger message still
    # comes through: the broker always returns at least one. librdkafka refuses a fetch.max.bytes below
    # its message.max.bytes (1,000,000), hence the floor.
    fetch_max_kbytes: int = Field(default=1_024, ge=1_024)
    fetch_partition_max_kbytes: int = Field(default=256, ge=16)
    # How often librdkafka reports per-partition lag (stream_tagger_consumer_lag); cheap, off the hot path.
    lag_interval_ms: int = Field(default=5_000, ge=100)
    # Longest a fetch waits at the broker for new data. Kafka answers as soon as data arrives; Tansu
    # sleeps half the remaining wait after an empty look: low values keep latency low on both.
    fetch_wait_max_ms: int = Field(default=5, ge=1)
    # At start the worker waits for the broker this often, forever, saying so in the log each time.
    broker_retry_seconds: float = Field(default=2.0, gt=0)
    # The keyword baseline costs ~70 us/post (more than the model): check every Nth scored event only.
    rules_baseline_stride: int = Field(default=20, ge=1)

    # --- web: /metrics, /healthz, /ready ---
    web_host: str = "0.0.0.0"
    web_port: int = Field(default=6066, ge=0, le=65535)
    # /healthz turns red when lag grew and nothing was processed for this long.
    stall_seconds: float = Field(default=60.0, gt=0)

    log_level: str = "INFO"

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> Self:
        # Kafka answers every acks=all write to such a topic with NOT_ENOUGH_REPLICAS.
        if self.min_insync_replicas is not None and self.min_insync_replicas > self.replication_factor:
            raise ValueError(f"min_insync_replicas ({self.min_insync_replicas}) exceeds replication_factor "
                             f"({self.replication_factor}): every acknowledged write would fail")
        return self

    def kafka_common(self) -> dict[str, str]:
        """librdkafka properties shared by every client (producer, consumer, admin)."""
        conf: dict[str, str] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        return conf

    def topics(self) -> list[str]:
        """Every topic the service reads (raw, feedback) or writes, created together with one partition
        count: the feedback join needs the tagged and feedback topics co-partitioned."""
        return [
            self.topic_raw,
            self.topic_tagged,
            self.topic_review,
            self.topic_dead_letter,
            self.topic_feedback,
            self.topic_shadow_disagreements,
        ]
