"""``chargetracker worker`` argument handling (the end-to-end runs are in test_failover)."""

from __future__ import annotations

import pytest

from chargetracker.cli import build_parser, main
from chargetracker.cli.worker import build_settings
from chargetracker.errors import ConfigError
from chargetracker.kafka.client import client_config, parse_extra


def test_flags_become_settings() -> None:
    args = build_parser().parse_args([
        "worker", "--broker", "k1:9092,k2:9092", "--topic", "m", "--group-id", "g",
        "--store", "postgresql://u@h/db", "--dead-letter-topic", "m-dead",
        "-X", "security.protocol=SASL_SSL", "-X", "sasl.password=a=b"])
    s = build_settings(args)
    assert s.store_url == "postgresql://u@h/db"
    k = s.kafka
    assert (k.brokers, k.topic, k.group_id, k.dead_letter_topic) == ("k1:9092,k2:9092", "m", "g", "m-dead")
    assert k.extra == (("security.protocol", "SASL_SSL"), ("sasl.password", "a=b"))
    conf = client_config(k, "consumer", **{"session.timeout.ms": 10_000})
    assert conf["bootstrap.servers"] == "k1:9092,k2:9092" and conf["sasl.password"] == "a=b"


def test_extra_wins_and_is_split_by_role() -> None:
    extra = parse_extra(["session.timeout.ms=3000", "linger.ms=5", "ssl.ca.location=/ca.pem"])
    from chargetracker.config import KafkaConfig

    cfg = KafkaConfig(extra=extra)
    consumer = client_config(cfg, "consumer", **{"session.timeout.ms": 10_000})
    producer = client_config(cfg, "producer", **{"linger.ms": 20})
    assert consumer["session.timeout.ms"] == "3000" and "linger.ms" not in consumer
    assert producer["linger.ms"] == "5" and "session.timeout.ms" not in producer
    assert consumer["ssl.ca.location"] == producer["ssl.ca.location"] == "/ca.pem"
    with pytest.raises(ConfigError):
        parse_extra(["no-equals-sign"])


def test_missing_store_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--broker", "127.0.0.1:1"]) == 2
    assert "--store" in capsys.readouterr().err


def test_worker_options_from_flags() -> None:
    from chargetracker.cli.worker import build_options

    base = ["worker", "--broker", "k:9092", "--store", "postgresql://u@h/db"]
    args = build_parser().parse_args(base)
    opts = build_options(args, build_settings(args))
    assert opts.pipeline_commits and opts.archive_fsync
    args = build_parser().parse_args([*base, "--no-pipeline-commits", "--archive-no-fsync",
                                      "--archive", "/tmp/a"])
    opts = build_options(args, build_settings(args))
    assert not opts.pipeline_commits and not opts.archive_fsync
    assert opts.archive_dir == "/tmp/a"
