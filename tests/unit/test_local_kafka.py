"""The configuration LocalKafka gives its nodes: what the tests on it rely on, checked without a JVM."""

from __future__ import annotations

import base64
from pathlib import Path

from stream_tagger.kafka.local_cluster import LocalKafka, random_cluster_id


def test_a_single_node_runs_consumer_groups_and_transactions_alone(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path)
    (node,) = kafka.nodes
    config = kafka.server_properties(node)
    assert config["process.roles"] == "broker,controller"
    assert config["controller.quorum.voters"] == f"1@127.0.0.1:{node.controller_port}"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "default.replication.factor",
    ):
        assert config[key] == 1, key
    assert config["group.initial.rebalance.delay.ms"] == 0
    assert config["auto.create.topics.enable"] == "true"


def test_three_nodes_form_one_quorum_and_replicate_internal_topics_three_times(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path, brokers=3)
    configs = [kafka.server_properties(node) for node in kafka.nodes]
    assert len({c["controller.quorum.voters"] for c in configs}) == 1
    assert configs[0]["controller.quorum.voters"].count("@") == 3
    assert [c["node.id"] for c in configs] == [1, 2, 3]
    ports = [p for node in kafka.nodes for p in (node.port, node.controller_port)]
    assert len(set(ports)) == 6
    assert kafka.bootstrap_servers == ",".join(f"127.0.0.1:{node.port}" for node in kafka.nodes)
    assert {c["offsets.topic.replication.factor"] for c in configs} == {3}
    assert {c["transaction.state.log.min.isr"] for c in configs} == {2}
    assert kafka.heap_mb < LocalKafka(tmp_path).heap_mb, "three JVMs get a smaller heap each"


def test_cluster_ids_are_kafka_uuids() -> None:
    for _ in range(200):
        cluster_id = random_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
